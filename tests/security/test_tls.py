"""A whole render over mutual TLS, with certificates generated here.

`dispatcher run` serves with a server certificate and requires client
certificates; its two local agents, the services calling each other and this
test (as a client of the facade's kind) all present one signed by the test CA
and verify the server against it. Plaintext clients and clients without a
certificate are refused.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from muster_gateway.tls import ClientTLS, open_channel
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.e2e.conftest import free_port, online_nodes
from tests.e2e.test_render import eventually, frame_job, job_status
from tests.support import DispatcherProcess, health_status

pytestmark = pytest.mark.slow


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    folder: Path,
    stem: str,
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        assert usage is not None
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        )
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (folder / f"{stem}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate, key


@pytest.fixture
def certificates(shared_tmp: Path) -> Path:
    folder = shared_tmp / "pki"
    folder.mkdir()
    ca = _issue(folder, "ca", "farm test CA", None)
    _issue(folder, "server", "dispatcher", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    _issue(folder, "client", "farm client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    # A client certificate from a CA the dispatcher does not trust.
    stranger = _issue(folder, "stranger-ca", "someone else", None)
    _issue(folder, "stranger", "stranger", stranger, ExtendedKeyUsageOID.CLIENT_AUTH)
    return folder


def _tls_env(pki: Path) -> dict[str, str]:
    return {
        "MUSTER_TLS_CERT_FILE": str(pki / "server.pem"),
        "MUSTER_TLS_KEY_FILE": str(pki / "server.key"),
        "MUSTER_TLS_CLIENT_CA_FILE": str(pki / "ca.pem"),
        "MUSTER_TLS_CA_FILE": str(pki / "ca.pem"),
        "MUSTER_TLS_CLIENT_CERT_FILE": str(pki / "client.pem"),
        "MUSTER_TLS_CLIENT_KEY_FILE": str(pki / "client.key"),
    }


def _refused(channel: grpc.Channel) -> bool:
    try:
        health_status(channel, "")
    except grpc.RpcError as exc:
        return bool(exc.code() == grpc.StatusCode.UNAVAILABLE)
    return False


def test_a_job_renders_over_mutual_tls_and_plaintext_or_unknown_clients_are_refused(
    certificates: Path,
    database_url: str,
    shared_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        **_tls_env(certificates),
        "MUSTER_DATABASE_URL": database_url,
        "MUSTER_DATA_DIR": str(shared_tmp / "data"),
        "MUSTER_HOOKS_DIR": str(shared_tmp / "no-hooks"),
        "MUSTER_AGENT_DISCOVERY": "off",
        "MUSTER_EVENT_POLL_SECONDS": "1",
        # Kubernetes `grpc:` probes speak plaintext: they use this port.
        "MUSTER_HEALTH_LISTEN": f"127.0.0.1:{free_port()}",
    }
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)  # this test is a TLS client too
    dispatcher = DispatcherProcess(["run", "--agents", "2"], env, timeout=120)
    out = shared_tmp / "frames"
    out.mkdir()
    try:
        with dispatcher.channel() as channel:
            nodes = nodes_pb2_grpc.NodesServiceStub(channel)
            eventually(lambda: len(online_nodes(nodes)) == 2, what="two agents online over mTLS")
            jobs = jobs_pb2_grpc.JobsServiceStub(channel)
            job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 6, 2))).job_id
            eventually(
                lambda: job_status(jobs, job_id) == jobs_pb2.JOB_STATUS_COMPLETED,
                timeout=90,
                what="the job renders over mutual TLS",
            )
        assert sorted(p.name for p in out.glob("frame_*.txt")) == [
            f"frame_{n}.txt" for n in range(1, 7)
        ]
        assert all(p.read_text() == "rendered\n" for p in out.glob("frame_*.txt"))

        # Plaintext, no client certificate, a certificate of another CA: refused.
        with grpc.insecure_channel(dispatcher.address) as plain:
            assert _refused(plain)
        anonymous = ClientTLS(str(certificates / "ca.pem"))
        with open_channel(dispatcher.address, tls=anonymous) as without_certificate:
            assert _refused(without_certificate)
        stranger = ClientTLS(
            str(certificates / "ca.pem"),
            str(certificates / "stranger.pem"),
            str(certificates / "stranger.key"),
        )
        with open_channel(dispatcher.address, tls=stranger) as foreign:
            assert _refused(foreign)
        # ... while the health listener answers the health check alone, in plaintext.
        with grpc.insecure_channel(env["MUSTER_HEALTH_LISTEN"]) as probe:
            assert health_status(probe, "") == "SERVING"
            with pytest.raises(grpc.RpcError) as other:
                nodes_pb2_grpc.NodesServiceStub(probe).ListNodes(
                    nodes_pb2.ListNodesRequest(), timeout=10
                )
            assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        dispatcher.kill()
