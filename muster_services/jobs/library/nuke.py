"""Built-in template 1006 "Nuke": `Nuke -V 2 -F <s>-<e>x<step> [-X nodes] -x script.nk`
(renderers.md §6).

With CONTINUE (`--cont`) Nuke keeps rendering after a frame error, so log
errors only mark the chunk with warnings; licence failures and crashes
still fail it.
"""

from typing import Any

import MTemplateAPI

PATH_ITEM = "NUKE_PATH"
ABORT = (
    r"Invalid .* license key\.",
    r"Worker process failed",
    r"Segmentation fault",
)
ERRORS = (r"ERROR:", r"Error:", r"Error :", r"Eddy\[ERROR\]", r"Node execution error:")
WARNINGS = (r"Warning:", r"WARNING:")


class NukeTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1006)
        self.setName("Nuke")
        self.setDescription(
            "Nuke render: Nuke -V 2 -F <start>-<end>x<step> [-X nodes] -x <script>."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile("SCENEFILE", "Script", "The .nk script", "", 0, 1, 1, "*.nk"),
                "job_file",
            ),
            (
                M.MTemplateItemString(
                    "WRITE_NODES",
                    "Write nodes",
                    "Nodes to render, comma separated (-X); empty: all",
                    "",
                    0,
                    0,
                    1,
                ),
                "write_nodes",
            ),
            (
                M.MTemplateItemInteger("THREADS", "Threads", "-m; 0: Nuke's default", 0, 0, 0, 1),
                "threads",
            ),
            (
                M.MTemplateItemYesNo(
                    "CONTINUE",
                    "Continue on error",
                    "--cont: go on after a frame error",
                    False,
                    0,
                    0,
                    1,
                ),
                "continue_on_error",
            ),
            (
                M.MTemplateItemYesNo(
                    "INTERACTIVE_LICENSE",
                    "Interactive licence",
                    "-i: use an interactive licence",
                    False,
                    0,
                    0,
                    1,
                ),
                "nuke_interactive",
            ),
            (
                M.MTemplateItemString("ADD_FLAGS", "Extra flags", "More Nuke flags", "", 0, 0, 1),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "Nuke",
            {
                "windows": "C:\\Program Files\\Nuke15.1v1\\Nuke15.1.exe",
                "linux": "/usr/local/Nuke15.1v1/Nuke15.1",
                "macos": "/Applications/Nuke15.1v1/Nuke15.1v1.app/Contents/MacOS/Nuke15.1v1",
            },
        )
        self.addProgressRegex(r"Frame [0-9]+ \(([0-9]+) of ([0-9]+)\)")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        frames = f"{frame(chunk.getStartFrame())}-{frame(chunk.getEndFrame())}"
        step = float(chunk.getByFrame() or 1.0)
        if step != 1.0:
            frames += f"x{frame(step)}"
        arguments = ["-V", "2", "-F", frames]
        nodes = job.attributeGetString("write_nodes").replace(" ", "")
        if nodes:
            arguments += ["-X", nodes]
        threads = job.attributeGetInt("threads")
        if threads > 0:
            arguments += ["-m", str(threads)]
        if job.attributeGetBool("continue_on_error"):
            arguments.append("--cont")
        if job.attributeGetBool("nuke_interactive"):
            arguments.append("-i")
        arguments += MTemplateAPI.splitArguments(job.attributeGetString("ADD_FLAGS"), platform)
        return [*arguments, "-x", job.attributeGetString("job_file")]

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        if job.attributeGetBool("continue_on_error"):
            return MTemplateAPI.checkLogPatterns(log, warnings=ERRORS + WARNINGS, abort=ABORT)
        return MTemplateAPI.checkLogPatterns(log, errors=ERRORS, warnings=WARNINGS, abort=ABORT)

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode)


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(NukeTemplate())
