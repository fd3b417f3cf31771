"""Built-in template 1009 "Katana": `katana --batch --katana-file=<f> --render-node=<n> -t <frames>`
(renderers.md §8). `-t` has no step form: a stepped chunk passes its frames
as a comma list.
"""

from typing import Any

import MTemplateAPI

PATH_ITEM = "KATANA_PATH"
ABORT: tuple[str, ...] = ()
ERRORS = (r"ERROR +\|", r"\[ERROR ")
WARNINGS = (r"WARNING +\|", r"\[WARNING ")


class KatanaTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1009)
        self.setName("Katana")
        self.setDescription(
            "Katana batch render: katana --batch --katana-file=<file> --render-node=<node> "
            "-t <frames>."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE", "Katana file", "The .katana project", "", 0, 1, 1, "*.katana"
                ),
                "job_file",
            ),
            (
                M.MTemplateItemString("RENDER_NODE", "Render node", "--render-node", "", 0, 1, 1),
                "render_node",
            ),
            (
                M.MTemplateItemString("ADD_FLAGS", "Extra flags", "More katana flags", "", 0, 0, 1),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "Katana",
            {
                "windows": "C:\\Program Files\\Katana7.0v1\\bin\\katanaBin.exe",
                "linux": "/opt/foundry/katana-program/katana",
            },
        )
        self.addProgressRegex(r"([0-9]+)% done")
        self.addFrameDoneRegex(r"Frame ([0-9]+) completed")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        if float(chunk.getByFrame() or 1.0) == 1.0:
            frames = f"{frame(chunk.getStartFrame())}-{frame(chunk.getEndFrame())}"
        else:
            frames = ",".join(frame(f) for f in MTemplateAPI.chunkFrames(chunk))
        arguments = ["--batch", f"--katana-file={job.attributeGetString('job_file')}"]
        arguments += [f"--render-node={job.attributeGetString('render_node')}", "-t", frames]
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


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(KatanaTemplate())
