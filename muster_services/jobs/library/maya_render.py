"""Built-in Maya `Render` templates with Muster's ids: 1 Maya Software, 46 Maya
Arnold, 55 Maya Redshift, 37 Maya V-Ray, 29 Maya RenderMan.

One process per chunk: `Render -r <renderer> -s <s> -e <e> -b <step> [-pad N]
[-cam c] [-rl layer] [-proj dir] [-rd dir] <ADD_FLAGS> <renderer flags> scene`
(renderers.md §1). docs/template-library.md lists the items.
"""

from typing import Any, ClassVar

import MTemplateAPI

PATH_ITEM = "MAYA_RENDER_PATH"
PATHS = {
    "windows": "C:\\Program Files\\Autodesk\\Maya2025\\bin\\Render.exe",
    "linux": "/usr/autodesk/maya2025/bin/Render",
    "macos": "/Applications/Autodesk/maya2025/Maya.app/Contents/bin/Render",
}
ENVIRONMENT = {
    "MAYA_DISABLE_CIP": "1",
    "MAYA_DISABLE_CER": "1",
    "MAYA_DISABLE_CLIC_IPM": "1",
    "MAYA_DEBUG_ENABLE_CRASH_REPORTING": "0",
}
# Licence failures and crashes: the render stops at once (Deadline/CGRU "always fail").
ABORT = (
    r"FLEXlm error: ",
    r"Maya: License was not obtained",
    r"could not get a license",
    r"Could not obtain a license",
    r"Fatal Error",
    r"Maya exited with status 210",
    r"CUDA_ERROR_UNKNOWN",
    r"Frame rendering aborted\.",
    r"Rendering was internally aborted",
)
ERRORS = (
    r"Usage: Render ",
    r"Cannot load scene",
    r"This scene does not have any renderable cameras",
    r"Error: Camera .* does not exist",
    r"Error: Failed to open IFF file for reading",
    r"Error: Scene was not loaded properly",
    r"can't create file \(No such file or directory\)",
    r"Not enough storage is available",
    r"Frame aborted",
    r"failed to render",
    r"\(kFailure\)",
)
WARNINGS = (r"^(?://\s*)?Warning: ",)
EXIT_CODES = {
    206: "Render could not parse its command line (a wrong project folder, or an output "
    "folder at a drive root?)",
}


class MayaRenderTemplate(MTemplateAPI.MTemplate):
    """A Maya `Render -r <renderer>` template; subclasses set the renderer."""

    RENDERER = "sw"
    RENDERER_FLAGS: tuple[str, ...] = ()
    RENDERER_ENVIRONMENT: ClassVar[dict[str, str]] = {}
    RENDERER_ABORT: tuple[str, ...] = ()
    RENDERER_ERRORS: tuple[str, ...] = ()
    RENDERER_WARNINGS: tuple[str, ...] = ()
    PROGRESS: tuple[str, ...] = ()
    FRAME_DONE: tuple[str, ...] = (r"Finished Rendering",)

    def __init__(self, template_id: int, name: str) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(template_id)
        self.setName(name)
        self.setDescription(
            f"Maya batch render with {name[5:]}: Render -r {self.RENDERER} -s <start> -e <end> "
            "-b <step> ... <scene>."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE", "Scene file", "The Maya scene", "", 0, 1, 1, "*.mb;*.ma"
                ),
                "job_file",
            ),
            (
                M.MTemplateItemFolder(
                    "PROJECT", "Project", "Maya project folder (-proj)", "", 0, 0, 1
                ),
                "job_project",
            ),
            (
                M.MTemplateItemFolder(
                    "OUTPUT_FOLDER", "Output folder", "Images folder (-rd)", "", 0, 0, 1
                ),
                "output_folder",
            ),
            (
                M.MTemplateItemString("CAMERA", "Camera", "Camera to render (-cam)", "", 0, 0, 1),
                "camera",
            ),
            (
                M.MTemplateItemString("LAYER", "Render layer", "Render layer (-rl)", "", 0, 0, 1),
                "render_layer",
            ),
            (
                M.MTemplateItemInteger(
                    "MAYADIGITS",
                    "Frame padding",
                    "Digits of frame numbers (-pad); 0: the scene's",
                    0,
                    0,
                    0,
                    1,
                ),
                "MAYADIGITS",
            ),
            (
                M.MTemplateItemString("ADD_FLAGS", "Extra flags", "More Render flags", "", 0, 0, 1),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(self, PATH_ITEM, "Maya Render", PATHS)
        for pattern in self.PROGRESS:
            self.addProgressRegex(pattern)
        for pattern in self.FRAME_DONE:
            self.addFrameDoneRegex(pattern)

    def _text(self, job: Any, item: str) -> str:
        return str(job.attributeGetString(self.resolveMapping(item))).strip()

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        arguments = ["-r", self.RENDERER, "-s", frame(chunk.getStartFrame()), "-e"]
        arguments += [frame(chunk.getEndFrame()), "-b", frame(chunk.getByFrame() or 1.0)]
        digits = int(job.attributeGetInt(self.resolveMapping("MAYADIGITS")))
        if digits > 0:
            arguments += ["-pad", str(digits)]
        for item, flag in (
            ("CAMERA", "-cam"),
            ("LAYER", "-rl"),
            ("PROJECT", "-proj"),
            ("OUTPUT_FOLDER", "-rd"),
        ):
            value = self._text(job, item)
            if value:
                arguments += [flag, value]
        arguments += MTemplateAPI.splitArguments(self._text(job, "ADD_FLAGS"), platform)
        arguments += list(self.RENDERER_FLAGS)
        return [*arguments, self._text(job, "SCENEFILE")]

    def onBuildEnvironment(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, existingEnvironment: Any
    ) -> Any:
        for key, value in {**ENVIRONMENT, **self.RENDERER_ENVIRONMENT}.items():
            if not existingEnvironment.hasValue(key):
                existingEnvironment.setValue(key, value)
        return existingEnvironment

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.checkLogPatterns(
            log,
            errors=self.RENDERER_ERRORS + ERRORS,
            warnings=self.RENDERER_WARNINGS + WARNINGS,
            abort=self.RENDERER_ABORT + ABORT,
        )

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode, what=EXIT_CODES.get(exitCode, ""))


class MayaSoftware(MayaRenderTemplate):
    RENDERER = "sw"


class MayaArnold(MayaRenderTemplate):
    RENDERER = "arnold"
    RENDERER_FLAGS = ("-ai:lve", "2")  # warnings and info: the "% done" lines
    RENDERER_ABORT = (
        r"\[mtoa\] Failed batch render",
        r"Plug-in, \"mtoa\", was not found on MAYA_PLUG_IN_PATH",
        r"signal caught: SIG[A-Z]+",
    )
    RENDERER_WARNINGS = (r"rendering with watermarks because of failed authorization",)
    PROGRESS = (r"([0-9]+)% done",)
    FRAME_DONE = (r"\|\s+render done",)


class MayaRedshift(MayaRenderTemplate):
    RENDERER = "redshift"
    RENDERER_ENVIRONMENT: ClassVar[dict[str, str]] = {"REDSHIFT_FORCEQUITONINTERNALERROR": "1"}
    RENDERER_ABORT = (
        r"License error",
        r"No devices found\. Aborting rendering\.",
        r"Error an illegal memory access was encountered",
    )
    PROGRESS = (r"Block (\d+)/(\d+) .+ rendered",)
    FRAME_DONE = (r"Frame.*done", r"Skipping frame")


class MayaVRay(MayaRenderTemplate):
    RENDERER = "vray"
    RENDERER_ABORT = (r"error: Could not obtain a license", r"V-Ray error: .*")
    PROGRESS = (r"V-Ray: +([0-9]+) ?%",)
    FRAME_DONE = (r"V-Ray: Total frame time",)


class MayaRenderMan(MayaRenderTemplate):
    RENDERER = "renderman"
    RENDERER_ABORT = (r"\{SEVERE\}\s+License", r"rman Fatal:")
    RENDERER_ERRORS = (r"rman Error:",)
    PROGRESS = (r"R90000\s*([0-9]+)%",)
    FRAME_DONE = (r"Finished Rendering",)


_manager = MTemplateAPI.MManager.getUniqueClass()
_manager.installPyTemplate(MayaSoftware(1, "Maya Software"))
_manager.installPyTemplate(MayaArnold(46, "Maya Arnold"))
_manager.installPyTemplate(MayaRedshift(55, "Maya Redshift"))
_manager.installPyTemplate(MayaVRay(37, "Maya V-Ray"))
_manager.installPyTemplate(MayaRenderMan(29, "Maya RenderMan"))
