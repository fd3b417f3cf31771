"""Built-in template 1001 "Blender": `blender -b <scene> -o <output> ... -s -e -j -a`.

Log lines per renderers.md §12 (Blender 3.x-5.x; 5.0 prefixes lines with
`<time>  render | `). docs/template-library.md lists the items.
"""

from typing import Any

import MTemplateAPI

PATH_ITEM = "BLENDER_PATH"
# A crash (Blender writes a crash report; Windows names the exception).
ABORT = (
    r"EXCEPTION_[A-Z_]+",
    r"Writing: .*\.crash\.txt",
    r"Error: CUDA error",
)
ERRORS = (
    r"^(?:\S+\s+render \| )?Error: ",
    r"^Traceback \(most recent call last\)",
    r"Unable to open",
    r"Failed to read blend file",
    r"Unable to create directory",
    r"Render error: cannot save",
)
WARNINGS = (r"^(?:\S+\s+render \| )?Warning: ",)
# Last: Blender runs its arguments in order.
FRAME_RANGE = ("-s", "{start}", "-e", "{end}", "-j", "{step}", "-a")


class BlenderTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1001)
        self.setName("Blender")
        self.setDescription(
            "Blender in the background: blender -b <job_file> -o <output_pattern> "
            "<blender_arguments> -s <start> -e <end> -j <step> -a. Job attributes: job_file "
            "(the .blend scene), output_pattern (for example //render/shot_####), "
            "blender_arguments (optional extra arguments placed before the frame range, for "
            "example --engine CYCLES)."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        for item, attribute in (
            (
                MTemplateAPI.MTemplateItemFile(
                    "SCENEFILE", "Scene file", "The .blend file", "", 0, 1, 1, "*.blend"
                ),
                "job_file",
            ),
            (
                MTemplateAPI.MTemplateItemString(
                    "OUTPUT",
                    "Output pattern",
                    "Output path, # for the frame number (//render/shot_####); empty: the scene's",
                    "",
                    0,
                    0,
                    1,
                ),
                "output_pattern",
            ),
            (
                MTemplateAPI.MTemplateItemString(
                    "ADD_FLAGS",
                    "Extra arguments",
                    "Arguments placed before the frame range (--engine CYCLES, -t 4)",
                    "",
                    0,
                    0,
                    1,
                ),
                "blender_arguments",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        MTemplateAPI.enableApplication(
            self,
            PATH_ITEM,
            "Blender",
            {
                "linux": "blender",
                "windows": "C:\\Program Files\\Blender Foundation\\Blender\\blender.exe",
                "macos": "/Applications/Blender.app/Contents/MacOS/Blender",
            },
        )
        # Cycles samples, older tile counters; a frame ends with its "Time:" line.
        self.addProgressRegex(r"\| Sample (\d+)/(\d+)")
        self.addProgressRegex(r"Rendered (\d+)/(\d+) Tiles")
        self.addProgressRegex(r"Path Tracing Tile (\d+)/(\d+)")
        self.addFrameDoneRegex(r"^(?:\S+\s+render \| )?\s*Time: \d")
        self.addFrameDoneRegex(r"[sS]kipping existing frame")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        output = ["-o", "{@output_pattern}"] if job.attributeGetString("output_pattern") else []
        return MTemplateAPI.expandArguments(
            ["-b", "{@job_file}", *output, "{*blender_arguments}", *FRAME_RANGE],
            job,
            chunk,
        )

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.checkLogPatterns(log, errors=ERRORS, warnings=WARNINGS, abort=ABORT)

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode)


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(BlenderTemplate())
