"""Built-in template 1005 "RenderMan prman": `prman -Progress -t:<threads> <scene.####.rib>`,
one RIB per frame, one frame per process (renderers.md §5).

The scene attribute holds a frame pattern (`#` run or `%04d`); a job gets
packet size 1 by default and a chunk of more frames is refused. `RMANTREE`
is set from the prman path (`<RMANTREE>/bin/prman`) unless the job sets it.
"""

import os
from typing import Any

import MTemplateAPI

PATH_ITEM = "PRMAN_PATH"
ABORT = (r"\{SEVERE\}\s+License",)
ERRORS = (
    r"\{(?:ERROR|SEVERE)\}",
    r"\bERROR\b",
    r"RIB error",
    r"Unable to find shader",
    r"Unable to find out device",
)
WARNINGS = (r"\{WARNING\}",)


class PrmanTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1005)
        self.setName("RenderMan prman")
        self.setDescription(
            "RenderMan: prman -Progress <scene.####.rib> per frame (packet size 1)."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        self.setDefaultPacketSize(1)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE",
                    "RIB files",
                    "The .rib files, # for the frame (shot.####.rib)",
                    "",
                    0,
                    1,
                    1,
                    "*.rib",
                ),
                "job_file",
            ),
            (
                M.MTemplateItemInteger("THREADS", "Threads", "-t:N; 0: all cores", 0, 0, 0, 1),
                "threads",
            ),
            (
                M.MTemplateItemString("ADD_FLAGS", "Extra flags", "More prman flags", "", 0, 0, 1),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "prman",
            {
                "windows": "C:\\Program Files\\Pixar\\RenderManProServer-26.3\\bin\\prman.exe",
                "linux": "/opt/pixar/RenderManProServer-26.3/bin/prman",
                "macos": "/Applications/Pixar/RenderManProServer-26.3/bin/prman",
            },
        )
        self.addProgressRegex(r"R90000\s*([0-9]+)%")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.singleFrame(chunk, "prman")
        arguments = ["-Progress", f"-t:{job.attributeGetInt('threads')}"]
        arguments += MTemplateAPI.splitArguments(job.attributeGetString("ADD_FLAGS"), platform)
        return [*arguments, MTemplateAPI.framePath(job.attributeGetString("job_file"), frame)]

    def onBuildEnvironment(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, existingEnvironment: Any
    ) -> Any:
        path = str(clientTemplatePreferences.get(PATH_ITEM) or "")
        if not existingEnvironment.hasValue("RMANTREE") and os.path.dirname(path):
            tree = os.path.dirname(os.path.dirname(path.replace("\\", "/")))
            if tree:
                existingEnvironment.setValue("RMANTREE", tree)
        return existingEnvironment

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.checkLogPatterns(log, errors=ERRORS, warnings=WARNINGS, abort=ABORT)

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode)


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(PrmanTemplate())
