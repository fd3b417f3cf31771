"""Built-in template 1012 "3ds Max": `3dsmaxcmd <scene> -start:<s> -end:<e> -nthFrame:<step>`
(renderers.md §11; Windows only).
"""

from typing import Any

import MTemplateAPI

PATH_ITEM = "MAXCMD_PATH"
ABORT: tuple[str, ...] = ()
ERRORS = (r"Error occured while rendering job", r"Error occurred while rendering job", r"ERROR :")
WARNINGS = (r"WARNING :",)


class MaxTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1012)
        self.setName("3ds Max")
        self.setDescription(
            "3ds Max: 3dsmaxcmd <scene> -start:<start> -end:<end> -nthFrame:<step> (Windows)."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE", "Scene file", "The .max scene", "", 0, 1, 1, "*.max"
                ),
                "job_file",
            ),
            (M.MTemplateItemString("CAMERA", "Camera", "-cam", "", 0, 0, 1), "camera"),
            (
                M.MTemplateItemFile(
                    "OUTPUT", "Output", "-outputName; empty: the scene's", "", 0, 0, 1, "*.*"
                ),
                "output_file",
            ),
            (
                M.MTemplateItemString(
                    "ADD_FLAGS", "Extra flags", "More 3dsmaxcmd flags", "", 0, 0, 1
                ),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "3dsmaxcmd",
            {"windows": "C:\\Program Files\\Autodesk\\3ds Max 2025\\3dsmaxcmd.exe"},
        )
        self.addProgressRegex(r"progr:\s+([0-9]+(?:\.[0-9]+)?)%\s*rendered")
        self.addFrameDoneRegex(r"Frame [0-9]+ completed")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        arguments = [job.attributeGetString("job_file")]
        arguments += [
            f"-start:{frame(chunk.getStartFrame())}",
            f"-end:{frame(chunk.getEndFrame())}",
        ]
        arguments += [f"-nthFrame:{frame(chunk.getByFrame() or 1.0)}"]
        arguments += ["-v:5", "-continueOnError", "-showRFW:0"]
        for attribute, flag in (("camera", "-cam:"), ("output_file", "-outputName:")):
            value = job.attributeGetString(attribute)
            if value:
                arguments.append(flag + value)
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


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(MaxTemplate())
