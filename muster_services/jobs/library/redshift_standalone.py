"""Built-in template 1004 "Redshift standalone": `redshiftCmdLine <scene.####.rs>`,
one .rs file per frame, one frame per process (renderers.md §4).

The scene attribute holds a frame pattern (`#` run or `%04d`); a job gets
packet size 1 by default and a chunk of more frames is refused.
"""

from typing import Any

import MTemplateAPI

PATH_ITEM = "REDSHIFT_PATH"
ABORT = (
    r"License error",
    r"No devices found\. Aborting rendering\.",
    r"Rendering was internally aborted",
    r"Error an illegal memory access was encountered",
)
ERRORS = (r"Redshift cannot operate with less than 128MB of free VRAM",)
WARNINGS: tuple[str, ...] = ()


class RedshiftTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1004)
        self.setName("Redshift standalone")
        self.setDescription(
            "Redshift standalone: redshiftCmdLine <scene.####.rs> per frame (packet size 1)."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        self.setDefaultPacketSize(1)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE",
                    "Scene files",
                    "The .rs files, # for the frame (shot.####.rs)",
                    "",
                    0,
                    1,
                    1,
                    "*.rs",
                ),
                "job_file",
            ),
            (
                M.MTemplateItemFolder(
                    "OUTPUT_FOLDER", "Output folder", "-oip; empty: the scene's", "", 0, 0, 1
                ),
                "output_folder",
            ),
            (
                M.MTemplateItemString(
                    "GPUS", "GPUs", "GPU numbers, comma separated (-gpu N each)", "", 0, 0, 1
                ),
                "redshift_gpus",
            ),
            (
                M.MTemplateItemString(
                    "ADD_FLAGS", "Extra flags", "More redshiftCmdLine flags", "", 0, 0, 1
                ),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "redshiftCmdLine",
            {
                "windows": "C:\\ProgramData\\Redshift\\bin\\redshiftCmdLine.exe",
                "linux": "/usr/redshift/bin/redshiftCmdLine",
            },
        )
        self.addProgressRegex(r"Block (\d+)/(\d+) .+ rendered")
        self.addFrameDoneRegex(r"Frame.*done")
        self.addFrameDoneRegex(r"Skipping frame")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.singleFrame(chunk, "redshiftCmdLine")
        arguments = [MTemplateAPI.framePath(job.attributeGetString("job_file"), frame)]
        folder = job.attributeGetString("output_folder")
        if folder:
            arguments += ["-oip", folder]
        for gpu in job.attributeGetString("redshift_gpus").replace(" ", "").split(","):
            if gpu:
                arguments += ["-gpu", gpu]
        return arguments + MTemplateAPI.splitArguments(
            job.attributeGetString("ADD_FLAGS"), platform
        )

    def onBuildEnvironment(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, existingEnvironment: Any
    ) -> Any:
        # Exit on an internal error instead of hanging (renderers.md §1, §4).
        if not existingEnvironment.hasValue("REDSHIFT_FORCEQUITONINTERNALERROR"):
            existingEnvironment.setValue("REDSHIFT_FORCEQUITONINTERNALERROR", "1")
        return existingEnvironment

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.checkLogPatterns(log, errors=ERRORS, warnings=WARNINGS, abort=ABORT)

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode)


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(RedshiftTemplate())
