"""Built-in template 1011 "After Effects": `aerender -project <p> -comp <c> -s -e -i`
(renderers.md §10; Windows and macOS: there is no Linux After Effects).

A log without any `PROGRESS:` line is a failure (aerender rendered
nothing), as CGRU judges it.
"""

import re
from typing import Any

import MTemplateAPI

PATH_ITEM = "AERENDER_PATH"
ABORT = (
    r"Unable to obtain a license",
    r"Invalid Serial Number",
    r"is using the same serial number",
    r"unexpected failure during application startup",
)
ERRORS = (
    r"aerender Error",
    r"aerender ERROR",
    r"After Effects error",
    r"Unable to Render",
    r"Error:",
)
WARNINGS = (r"WARNING:After Effects [Ww]arn[ui]ng: ",)


class AfterEffectsTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1011)
        self.setName("After Effects")
        self.setDescription(
            "After Effects: aerender -project <aep> -comp <comp> -s <start> -e <end> -i <step>."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE", "Project", "The .aep project", "", 0, 1, 1, "*.aep;*.aepx"
                ),
                "job_file",
            ),
            (M.MTemplateItemString("COMP", "Composition", "-comp", "", 0, 1, 1), "comp_name"),
            (
                M.MTemplateItemFile(
                    "OUTPUT",
                    "Output",
                    "-output (path_[####].exr); empty: the render queue's",
                    "",
                    0,
                    0,
                    1,
                    "*.*",
                ),
                "output_file",
            ),
            (
                M.MTemplateItemString(
                    "RS_TEMPLATE", "Render settings template", "-RStemplate", "", 0, 0, 1
                ),
                "render_settings_template",
            ),
            (
                M.MTemplateItemString(
                    "OM_TEMPLATE", "Output module template", "-OMtemplate", "", 0, 0, 1
                ),
                "output_module_template",
            ),
            (
                M.MTemplateItemString(
                    "ADD_FLAGS", "Extra flags", "More aerender flags", "", 0, 0, 1
                ),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "aerender",
            {
                "windows": "C:\\Program Files\\Adobe\\Adobe After Effects 2024\\Support Files"
                "\\aerender.exe",
                "macos": "/Applications/Adobe After Effects 2024/aerender",
            },
        )
        # One "PROGRESS:  0;00;00;01 (2): 0 Seconds" line per rendered frame.
        self.addFrameDoneRegex(r"PROGRESS:\s+\S+ \(\d+\): \d+ Seconds")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        arguments = ["-project", job.attributeGetString("job_file")]
        arguments += ["-comp", job.attributeGetString("comp_name")]
        arguments += ["-s", frame(chunk.getStartFrame()), "-e", frame(chunk.getEndFrame())]
        arguments += ["-i", frame(chunk.getByFrame() or 1.0)]
        for attribute, flag in (
            ("output_file", "-output"),
            ("render_settings_template", "-RStemplate"),
            ("output_module_template", "-OMtemplate"),
        ):
            value = job.attributeGetString(attribute)
            if value:
                arguments += [flag, value]
        arguments += ["-v", "ERRORS_AND_PROGRESS", "-close", "DO_NOT_SAVE_CHANGES", "-sound", "OFF"]
        return arguments + MTemplateAPI.splitArguments(
            job.attributeGetString("ADD_FLAGS"), platform
        )

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        error = MTemplateAPI.checkLogPatterns(log, errors=ERRORS, warnings=WARNINGS, abort=ABORT)
        if error.isOk() and log.strip() and re.search(r"PROGRESS:", log) is None:
            return MTemplateAPI.MTemplateError(
                1,
                "aerender printed no PROGRESS line: nothing was rendered",
                MTemplateAPI.MTemplateError.kTemplateErrorTypeError,
            )
        return error

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode)


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(AfterEffectsTemplate())
