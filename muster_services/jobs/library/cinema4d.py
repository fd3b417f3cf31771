"""Built-in template 1010 "Cinema 4D": `Commandline -nogui -render <scene> -frame <s> <e> <step>`
(renderers.md §9). On Linux the node's environment must come from Maxon's
`setup_c4d_env` (the agent's own environment, or the job's).
"""

from typing import Any

import MTemplateAPI

PATH_ITEM = "C4D_PATH"
ABORT = (
    r"Invalid License from License Server",
    r"Enter Registration Data",
    r"\[rlm\] abort_on_license_fail enabled",
    r"RuntimeError: Error encountered when initializing Cinema4D",
)
ERRORS = (
    r"Document not found",
    r"Project not found",
    r"Error rendering project",
    r"Error loading project",
    r"Error rendering document",
    r"Error loading document",
    r"Rendering failed",
    r"Asset missing",
    r"Files cannot be written",
    r"Unable to write file",
    r"The output resolution is too high for the selected render engine",
    r"ImportError: No module named site",
)
WARNINGS: tuple[str, ...] = ()


class Cinema4DTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1010)
        self.setName("Cinema 4D")
        self.setDescription(
            "Cinema 4D: Commandline -nogui -render <scene> -frame <start> <end> <step>."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE", "Scene file", "The .c4d file", "", 0, 1, 1, "*.c4d"
                ),
                "job_file",
            ),
            (
                M.MTemplateItemString(
                    "TAKE", "Take", "-take; empty: the current take", "", 0, 0, 1
                ),
                "take",
            ),
            (
                M.MTemplateItemFile(
                    "OUTPUT",
                    "Image output",
                    "-oimage path/prefix; empty: the scene's",
                    "",
                    0,
                    0,
                    1,
                    "*.*",
                ),
                "output_file",
            ),
            (
                M.MTemplateItemFile(
                    "MULTIPASS_OUTPUT",
                    "Multi-pass output",
                    "-omultipass path/prefix",
                    "",
                    0,
                    0,
                    1,
                    "*.*",
                ),
                "multipass_file",
            ),
            (
                M.MTemplateItemInteger("THREADS", "Threads", "-threads; 0: all cores", 0, 0, 0, 1),
                "threads",
            ),
            (
                M.MTemplateItemString(
                    "ADD_FLAGS", "Extra flags", "More Commandline flags", "", 0, 0, 1
                ),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "Cinema 4D Commandline",
            {
                "windows": "C:\\Program Files\\Maxon Cinema 4D 2024\\Commandline.exe",
                "linux": "/opt/maxon/cinema4d2024/bin/Commandline",
                "macos": "/Applications/Maxon Cinema 4D 2024/Commandline.app/Contents/MacOS"
                "/Commandline",
            },
        )
        self.addProgressRegex(r"Progress: (\d+)%")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        arguments = ["-nogui", "-render", job.attributeGetString("job_file"), "-frame"]
        arguments += [frame(chunk.getStartFrame()), frame(chunk.getEndFrame())]
        arguments.append(frame(chunk.getByFrame() or 1.0))
        for attribute, flag in (
            ("take", "-take"),
            ("output_file", "-oimage"),
            ("multipass_file", "-omultipass"),
        ):
            value = job.attributeGetString(attribute)
            if value:
                arguments += [flag, value]
        threads = job.attributeGetInt("threads")
        if threads > 0:
            arguments += ["-threads", str(threads)]
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


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(Cinema4DTemplate())
