"""Built-in template 1002 "Arnold kick": one .ass file per frame, one frame per
process (renderers.md §2).

The scene attribute holds a frame pattern (`/scenes/shot.####.ass`: the
`#` run becomes the padded frame; `%04d` works too); a job gets packet size 1
by default, and a chunk of more than one frame is refused with a message.
"""

from typing import Any

import MClientAPI
import MTemplateAPI

PATH_ITEM = "KICK_PATH"
ABORT = (
    r"\[rlm\] error initializing license system",
    r"abort_on_license_fail",
    r"signal caught: SIG[A-Z]+",
)
ERRORS = (r"ERROR +\|",)
WARNINGS = (r"rendering with watermarks because of failed authorization", r"WARNING +\|")


class KickTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1002)
        self.setName("Arnold kick")
        self.setDescription(
            "Arnold standalone: kick -i <scene.####.ass> per frame (packet size 1)."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        self.setDefaultPacketSize(1)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE",
                    "Scene files",
                    "The .ass files, # for the frame (shot.####.ass)",
                    "",
                    0,
                    1,
                    1,
                    "*.ass;*.ass.gz",
                ),
                "job_file",
            ),
            (
                M.MTemplateItemFile(
                    "OUTPUT",
                    "Output image",
                    "Image path (-o), # for the frame; empty: the scene's",
                    "",
                    0,
                    0,
                    1,
                    "*.*",
                ),
                "output_file",
            ),
            (
                M.MTemplateItemInteger("THREADS", "Threads", "-t; 0: all cores", 0, 0, 0, 1),
                "threads",
            ),
            (
                M.MTemplateItemInteger(
                    "VERBOSITY", "Log level", "-v (2 or more shows progress)", 2, 0, 0, 1
                ),
                "arnold_verbosity",
            ),
            (
                M.MTemplateItemString("ADD_FLAGS", "Extra flags", "More kick flags", "", 0, 0, 1),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "Arnold kick",
            {"windows": "kick.exe", "linux": "kick", "macos": "kick"},
        )
        self.addProgressRegex(r"([0-9]+)% done")
        self.addFrameDoneRegex(r"\|\s+render done")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.singleFrame(chunk, "kick")
        scene = MTemplateAPI.framePath(job.attributeGetString("job_file"), frame)
        arguments = ["-nstdin", "-dw", "-dp", "-i", scene]
        output = job.attributeGetString("output_file")
        if output:
            arguments += ["-o", MTemplateAPI.framePath(output, frame)]
        verbosity = (
            job.attributeGetInt("arnold_verbosity")
            if "arnold_verbosity" in job.attributeList()
            else 2
        )
        arguments += ["-t", str(job.attributeGetInt("threads")), "-v", str(verbosity)]
        arguments += ["-set", "options.abort_on_license_fail", "true"]
        if platform == MClientAPI.kPlatformWindows:
            arguments.append("-nocrashpopup")
        return arguments + MTemplateAPI.splitArguments(
            job.attributeGetString("ADD_FLAGS"), platform
        )

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.checkLogPatterns(log, errors=ERRORS, warnings=WARNINGS, abort=ABORT)

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode)


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(KickTemplate())
