"""The soak itself: a job feeder and a fault injector against the farm, a
bounded drain, then the checker over the frame files and the database."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from sqlalchemy import text

from bench.soak.checker import Job, Outcome, Run, check
from bench.soak.farm import Farm, Postgres
from muster_gateway.tls import open_channel, with_token
from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services.core.database import Database
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID

# The share of jobs whose frames render longer than the lost-node timeout.
LONG_FRAME_SHARE = 0.2

FAULT_KINDS = (
    "kill-agent",
    "kill-nodes-replica",
    "kill-scheduler-leader",
    "kill-jobs-replica",
    "kill-admin-replica",
    "restart-postgres",
    "pause-process",
)


class Clock:
    """Seconds since the soak began, for the printed timeline."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        print(f"[{self.now():7.1f}s] {message}", flush=True)


# How often a render process writes that it is alive.
ALIVE_SECONDS = 0.5


def frame_script(folder: Path, seconds: float) -> str:
    """Each frame $f of the chunk's range: a start mark, a render (sleep) that
    marks it is alive every half second, an end mark, appended to the frame's
    own file. $$ is the render process."""
    mark = f'echo "%s $$ $(date +%%s.%%N)" >> {folder}/frame_$f.txt'
    ticks = max(1, round(seconds / ALIVE_SECONDS))
    render = f"for t in $(seq {ticks}); do sleep {seconds / ticks:.3f}; {mark % 'alive'}; done"
    each = f"{mark % 'start'}; {render}; {mark % 'end'}"
    return f"for f in $(seq {{start}} {{end}}); do {each}; done"


def soak_job(name: str, folder: Path, frames: int, seconds: float) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        name=name,
        owner="soak",
        parent_id=-1,
        template_id=COMMAND_LINE_TEMPLATE_ID,
        start_frame=1,
        end_frame=frames,
        by_frame=1,
        packet_size=1,
        priority=50,
        # Faults requeue chunks; the soak checks they render, not that they
        # give up after the default number of requeues.
        max_chunk_requeues=1000,
        attributes=[
            jobs_pb2.JobAttribute(name="executable", string_value="/bin/sh"),
            jobs_pb2.JobAttribute(
                name="arguments", string_value=f"-c '{frame_script(folder, seconds)}'"
            ),
        ],
    )


@dataclass
class Feeder:
    """Submits a job every few seconds through both jobs replicas; each
    submission has a request id, retried (idempotently) until accepted."""

    farm: Farm
    rng: random.Random
    clock: Clock
    frames_dir: Path
    prefix: str  # of every job name: soak-<seed>-<start time>-
    stop: threading.Event = field(default_factory=threading.Event)
    accepted: dict[str, int] = field(default_factory=dict)
    given_up: list[str] = field(default_factory=list)
    retries: int = 0
    _token: str = ""

    def token(self) -> str:
        """A login through the admin replicas (it exercises them); the
        farm-signed token while no admin replica answers."""
        try:
            with open_channel(self.farm.addresses["admin"]) as channel:
                reply = admin_pb2_grpc.AdminServiceStub(channel).Login(
                    admin_pb2.LoginRequest(user_name="admin", password=self.farm.admin_password),
                    timeout=10,
                )
            self._token = str(reply.token)
        except grpc.RpcError:
            self._token = self._token or self.farm.token()
        return self._token

    def run(self) -> None:
        number = 0
        token = self.token()
        while not self.stop.is_set():
            number += 1
            if number % 10 == 0:
                token = self.token()
            name = f"{self.prefix}{number}"
            folder = self.frames_dir / name
            folder.mkdir(parents=True)
            job = soak_job(name, folder, self.rng.randint(3, 8), self.frame_seconds())
            self._submit(name, job, token)
            self.stop.wait(self.rng.uniform(2.0, 4.0))

    def frame_seconds(self) -> float:
        """How long each frame of a job renders: mostly 0.5 to 2 s; one job in
        five renders frames longer than the lost-node timeout, so that a render
        outlives a paused agent's lease (the case muster_agent/lease.py covers)."""
        if self.rng.random() < LONG_FRAME_SHARE:
            return self.farm.lost_timeout + self.rng.uniform(3.0, 8.0)
        return self.rng.uniform(0.5, 2.0)

    def _submit(self, name: str, job: jobs_pb2.Job, token: str) -> None:
        deadline = time.monotonic() + 90
        with with_token(open_channel(self.farm.addresses["jobs"]), token) as channel:
            stub = jobs_pb2_grpc.JobsServiceStub(channel)
            while True:
                try:
                    reply = stub.SubmitJob(
                        jobs_pb2.SubmitJobRequest(job=job, request_id=name), timeout=15
                    )
                    self.accepted[name] = int(reply.job_id)
                    return
                except grpc.RpcError as exc:
                    if time.monotonic() > deadline:
                        self.given_up.append(name)
                        self.clock.say(f"feeder: gave up on {name}: {exc.code().name}")
                        return
                    self.retries += 1
                    time.sleep(0.5)


@dataclass
class Injector:
    """One fault at a time, at random moments of a seeded RNG; every fault is
    printed with its time. Killed processes come back after a short delay, as
    a supervisor (systemd, Kubernetes) would bring them back."""

    farm: Farm
    rng: random.Random
    clock: Clock
    gap: tuple[float, float] = (4.0, 14.0)
    only: tuple[str, ...] = FAULT_KINDS
    stop: threading.Event = field(default_factory=threading.Event)
    injected: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [k for k in self.only if k != "restart-postgres" or self.farm.postgres.restartable]

    def run(self) -> None:
        actions: dict[str, Callable[[], str]] = {
            "kill-agent": self._kill_agent,
            "kill-nodes-replica": lambda: self._kill_replica("nodes"),
            "kill-scheduler-leader": self._kill_leader,
            "kill-jobs-replica": lambda: self._kill_replica("jobs"),
            "kill-admin-replica": lambda: self._kill_replica("admin"),
            "restart-postgres": self._restart_postgres,
            "pause-process": self._pause,
        }
        while not self.stop.wait(self.rng.uniform(*self.gap)):
            kind = self.rng.choice(self.kinds())
            try:
                detail = actions[kind]()
            except Exception as exc:  # a fault that could not be injected is reported
                self.errors.append(f"{kind}: {exc}")
                self.clock.say(f"fault {kind} FAILED to inject: {exc}")
                continue
            self.injected[kind] += 1
            self.clock.say(f"fault {kind}: {detail}")

    def _back(self, process_name: str, restart: Callable[[], None]) -> None:
        time.sleep(self.rng.uniform(0.5, 3.0))
        restart()
        self.clock.say(f"  {process_name} started again")

    def _kill_agent(self) -> str:
        agent = self.rng.choice(list(self.farm.agents.values()))
        agent.kill()
        self.clock.say(f"fault kill-agent: SIGKILL {agent.name} (pid {agent.pid})")
        self._back(agent.name, agent.start)
        return f"{agent.name} back on the same work folder"

    def _restart_service(self, name: str) -> None:
        process = self.farm.services[name]
        process.start()
        process.wait_ready()

    def _kill_replica(self, service: str) -> str:
        leader = self.farm.leader()
        candidates = [p for p in self.farm.replicas(service) if p is not leader] or (
            self.farm.replicas(service)
        )
        replica = self.rng.choice(candidates)
        pid = replica.pid
        replica.kill()
        self.clock.say(f"fault kill-{service}-replica: SIGKILL {replica.name} (pid {pid})")
        self._back(replica.name, lambda: self._restart_service(replica.name))
        return f"{replica.name} restarted"

    def _kill_leader(self) -> str:
        leader = self.farm.leader()
        if leader is None:
            raise RuntimeError("no jobs replica has logged leadership")
        pid = leader.pid
        leader.kill()
        self.clock.say(f"fault kill-scheduler-leader: SIGKILL {leader.name} (pid {pid})")
        self._back(leader.name, lambda: self._restart_service(leader.name))
        return f"{leader.name} restarted"

    def _restart_postgres(self) -> str:
        immediate = self.rng.random() < 0.5
        started = time.monotonic()
        self.farm.postgres.restart(immediate)
        mode = "immediate (crash)" if immediate else "fast"
        return f"pg_ctl restart -m {mode} took {time.monotonic() - started:.1f}s"

    def _pause(self) -> str:
        pool = list(self.farm.agents.values()) + self.farm.replicas("nodes")
        target = self.rng.choice(pool)
        seconds = self.farm.lost_timeout + self.rng.uniform(2.0, 6.0)
        target.signal(signal.SIGSTOP)
        self.clock.say(f"fault pause-process: SIGSTOP {target.name} (pid {target.pid})")
        time.sleep(seconds)
        target.signal(signal.SIGCONT)
        return f"SIGCONT {target.name} after {seconds:.1f}s"


@dataclass
class Collected:
    jobs: list[Job]
    runs: list[Run]
    frame_files: dict[tuple[str, int], str]


def collect(db: Database, frames_dir: Path, prefix: str) -> Collected:
    """The soak's jobs (named `prefix`...), their chunk runs and their frame files."""
    with db.read() as connection:
        job_rows = connection.execute(
            text(
                "SELECT j.id, j.name, j.status, array_agg(c.start_frame ORDER BY c.chunk_number)"
                " FROM jobs j JOIN chunks c ON c.job_id = j.id"
                " WHERE starts_with(j.name, :prefix) GROUP BY j.id"
            ),
            {"prefix": prefix},
        ).all()
        run_rows = connection.execute(
            text(
                "SELECT r.job_id, r.chunk_number, r.run_number, r.start_frame, r.end_frame,"
                " r.started_at, r.ended_at, r.outcome FROM chunk_runs r"
                " JOIN jobs j ON j.id = r.job_id WHERE starts_with(j.name, :prefix)"
            ),
            {"prefix": prefix},
        ).all()
    jobs = [Job(int(i), str(n), str(s), [int(f) for f in frames]) for i, n, s, frames in job_rows]
    runs = [
        Run(int(j), int(c), int(n), int(sf), int(ef), started, ended, str(outcome))
        for j, c, n, sf, ef, started, ended, outcome in run_rows
    ]
    files: dict[tuple[str, int], str] = {}
    for job in jobs:
        for frame in job.frames:
            path = frames_dir / job.name / f"frame_{frame}.txt"
            files[(job.name, frame)] = path.read_text(errors="replace") if path.exists() else ""
    return Collected(jobs, runs, files)


def drain(db: Database, clock: Clock, timeout: float, prefix: str) -> bool:
    """Wait until no soak job is unfinished, or until none finished for
    `timeout` seconds (stuck: a farm still working through the backlog the
    faults left is given the time it needs)."""
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        with db.read() as connection:
            open_jobs = connection.execute(
                text(
                    "SELECT count(*) FROM jobs WHERE starts_with(name, :prefix)"
                    " AND status IN ('queued', 'waiting_dependencies', 'running')"
                ),
                {"prefix": prefix},
            ).scalar_one()
        if open_jobs == 0:
            return True
        if open_jobs != last:
            clock.say(f"drain: {open_jobs} jobs still open")
            if last == -1 or open_jobs < last:
                deadline = time.monotonic() + timeout
            last = open_jobs
        if time.monotonic() > deadline:
            return False
        time.sleep(1)


def soak(
    folder: Path,
    minutes: float,
    seed: int,
    external_url: str = "",
    agents: int = 3,
    instances: int = 2,
    lost_timeout: float = 6.0,
    drain_seconds: float = 180.0,
    fault_gap: tuple[float, float] = (4.0, 14.0),
    faults: tuple[str, ...] = FAULT_KINDS,
) -> Outcome:
    """Run the whole soak in `folder` (emptied first) and check it."""
    clock = Clock()
    frames_dir = folder / "frames"
    frames_dir.mkdir(parents=True)
    # Two generators: the faults' schedule does not depend on how many jobs
    # the feeder happened to submit.
    fault_rng, job_rng = random.Random(seed), random.Random(seed + 1)
    postgres = Postgres(folder / "pg", external_url)
    farm = Farm(folder, postgres, agents, instances, lost_timeout)
    # Names unique to this run: a second soak on the same external database
    # (same seed or not) neither meets the first one's jobs nor reuses their
    # request ids.
    prefix = f"soak-{seed}-{int(time.time())}-"
    feeder = Feeder(farm, job_rng, clock, frames_dir, prefix)
    injector = Injector(farm, fault_rng, clock, fault_gap, faults)
    db = Database(postgres.url, pool_size=2)
    try:
        clock.say(f"farm starting in {folder} (logs in {folder / 'logs'})")
        farm.start()
        clock.say(f"farm ready: {farm.describe()}")
        threads = [
            threading.Thread(target=feeder.run, name="feeder", daemon=True),
            threading.Thread(target=injector.run, name="injector", daemon=True),
        ]
        for thread in threads:
            thread.start()
        time.sleep(minutes * 60)
        clock.say("time is up: feeding and faults stop")
        feeder.stop.set()
        injector.stop.set()
        for thread in threads:
            thread.join(180)
        for process in farm.processes():  # whatever a fault left stopped
            process.signal(signal.SIGCONT)
        clock.say(
            f"feeder: {len(feeder.accepted)} accepted, {feeder.retries} retried calls,"
            f" {len(feeder.given_up)} given up"
        )
        drained = drain(db, clock, drain_seconds, prefix)
        clock.say("drained" if drained else f"NOT drained after {drain_seconds:.0f}s")
        time.sleep(2)  # the last end marks and reports land
        collected = collect(db, frames_dir, prefix)
    finally:
        db.dispose()
        farm.end()
        postgres.stop()
    record = {
        "seed": seed,
        "prefix": prefix,
        "faults": dict(injector.injected),
        "accepted": feeder.accepted,
    }
    (folder / "soak.json").write_text(json.dumps(record, indent=1))
    outcome = check(
        faults=injector.injected,
        accepted=feeder.accepted,
        jobs=collected.jobs,
        frame_files=collected.frame_files,
        runs=collected.runs,
    )
    outcome.notes += [f"fault not injected: {error}" for error in injector.errors]
    outcome.notes.append(
        f"feeder: {feeder.retries} retried calls, {len(feeder.given_up)} submissions given up"
    )
    return outcome


def check_again(folder: Path, external_url: str = "") -> Outcome:
    """The checker over a finished soak's folder and database (the faults
    and the accepted submissions from its soak.json)."""
    record = json.loads((folder / "soak.json").read_text())
    postgres = Postgres(folder / "pg", external_url, fresh=False)
    db = Database(postgres.url, pool_size=1)
    try:
        collected = collect(db, folder / "frames", str(record.get("prefix", "soak-")))
    finally:
        db.dispose()
        postgres.stop()
    return check(
        faults=Counter(record["faults"]),
        accepted={str(k): int(v) for k, v in record["accepted"].items()},
        jobs=collected.jobs,
        frame_files=collected.frame_files,
        runs=collected.runs,
    )
