"""Built-in Houdini templates (renderers.md §7):

- 1007 "Houdini ROP": SideFX's `hrender.py` run by `hython` (the documented
  `hrender -e -f <s> <e> -i <step> -d <rop> file.hip`); hrender.py is taken
  from the HRENDER_PATH client item, else from beside hython;
- 1008 "Houdini husk": USD files, `husk --frame <s> --frame-count <n>
  --frame-inc <step> file.usd`, Alfred-style progress.
"""

import ntpath
import posixpath
import shutil
from typing import Any

import MClientAPI
import MTemplateAPI

HFS = {
    "windows": "C:\\Program Files\\Side Effects Software\\Houdini 20.5.332\\bin\\",
    "linux": "/opt/hfs20.5/bin/",
    "macos": "/Applications/Houdini/Houdini20.5.332/Frameworks/Houdini.framework/Versions"
    "/Current/Resources/bin/",
}
EXE = {"windows": ".exe", "linux": "", "macos": ""}
ABORT = (
    r"No licenses could be found to run this application",
    r"Please check for a valid license server host",
)
ERRORS = (
    r"Error: ",
    r"Couldn't find renderer",
    r"Error loading geometry .* from stdin",
    r"Failed to create file",
    r"USD ERROR",
    r"Bad node type found: Redshift_ROP",
    r"Redshift cannot operate with less than 128MB of free VRAM",
)
WARNINGS = (
    r"OpenCL Exception",
    r"Unable to load texture",
    r"mantra: WARNING:",
    r"karma: WARNING:",
)


class HoudiniTemplate(MTemplateAPI.MTemplate):
    """What both Houdini templates share: the checks, the application path."""

    PATH_ITEM = "HYTHON_PATH"
    PROGRAM = "hython"

    def __init__(self, template_id: int, name: str, description: str) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(template_id)
        self.setName(name)
        self.setDescription(description)
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        MTemplateAPI.enableApplication(
            self,
            self.PATH_ITEM,
            self.PROGRAM,
            {p: HFS[p] + self.PROGRAM + EXE[p] for p in HFS},
        )
        self.addProgressRegex(r"ALF_PROGRESS\s+([0-9]+)%")

    def add_items(self, *items: tuple[Any, str]) -> None:
        for item, attribute in items:
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, self.PATH_ITEM, pathOut)

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.checkLogPatterns(log, errors=ERRORS, warnings=WARNINGS, abort=ABORT)

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode)


class HoudiniRop(HoudiniTemplate):
    def __init__(self) -> None:
        HoudiniTemplate.__init__(
            self,
            1007,
            "Houdini ROP",
            "Houdini ROP render: hython hrender.py -e -f <start> <end> -i <step> -d <rop> <hip>.",
        )
        M = MTemplateAPI
        self.add_items(
            (
                M.MTemplateItemFile(
                    "SCENEFILE", "Scene file", "The .hip file", "", 0, 1, 1, "*.hip;*.hiplc;*.hipnc"
                ),
                "job_file",
            ),
            (
                M.MTemplateItemString(
                    "ROP", "ROP", "Output driver to render (-d)", "/out/mantra1", 0, 1, 1
                ),
                "rop_node",
            ),
            (
                M.MTemplateItemString("TAKE", "Take", "-t; empty: the current take", "", 0, 0, 1),
                "take",
            ),
            (
                M.MTemplateItemFile("OUTPUT", "Output", "-o; empty: the ROP's", "", 0, 0, 1, "*.*"),
                "output_file",
            ),
            (
                M.MTemplateItemString(
                    "ADD_FLAGS", "Extra flags", "More hrender flags", "", 0, 0, 1
                ),
                "ADD_FLAGS",
            ),
        )
        for section in self.platforms():
            if section.isPlatformEnabled():
                section.addClientConfigurationItem(
                    M.MTemplateItemFile(
                        "HRENDER_PATH",
                        "hrender.py",
                        "Path of SideFX's hrender.py; empty: the one beside hython",
                        "",
                        0,
                        0,
                        1,
                        "*.py",
                    )
                )
        self.addFrameDoneRegex(r"Render Time:")

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        script = str(clientTemplatePreferences.get("HRENDER_PATH") or "").strip()
        if not script:
            hython = str(clientTemplatePreferences.get(self.PATH_ITEM) or "hython")
            found = shutil.which(hython) or hython
            # The node's own path rules (ntpath on Windows).
            path = ntpath if platform == MClientAPI.kPlatformWindows else posixpath
            script = path.join(path.dirname(found), "hrender.py")
        arguments = [script, "-e", "-f", frame(chunk.getStartFrame()), frame(chunk.getEndFrame())]
        arguments += [
            "-i",
            frame(chunk.getByFrame() or 1.0),
            "-d",
            job.attributeGetString("rop_node"),
        ]
        for attribute, flag in (("take", "-t"), ("output_file", "-o")):
            value = job.attributeGetString(attribute)
            if value:
                arguments += [flag, value]
        arguments += [
            "-v",
            *MTemplateAPI.splitArguments(job.attributeGetString("ADD_FLAGS"), platform),
        ]
        return [*arguments, job.attributeGetString("job_file")]


class HoudiniHusk(HoudiniTemplate):
    PATH_ITEM = "HUSK_PATH"
    PROGRAM = "husk"

    def __init__(self) -> None:
        HoudiniTemplate.__init__(
            self,
            1008,
            "Houdini husk",
            "USD render with husk: husk --frame <start> --frame-count <n> --frame-inc <step> "
            "<usd>.",
        )
        M = MTemplateAPI
        self.add_items(
            (
                M.MTemplateItemFile(
                    "SCENEFILE",
                    "USD file",
                    "The USD stage",
                    "",
                    0,
                    1,
                    1,
                    "*.usd;*.usda;*.usdc;*.usdz",
                ),
                "job_file",
            ),
            (
                M.MTemplateItemFile(
                    "OUTPUT",
                    "Output",
                    "-o ($F4 for the frame); empty: the stage's",
                    "",
                    0,
                    0,
                    1,
                    "*.*",
                ),
                "output_file",
            ),
            (M.MTemplateItemString("CAMERA", "Camera", "-c: camera prim", "", 0, 0, 1), "camera"),
            (
                M.MTemplateItemString(
                    "RENDER_SETTINGS", "Render settings", "-s: RenderSettings prim", "", 0, 0, 1
                ),
                "render_settings",
            ),
            (
                M.MTemplateItemString(
                    "RENDERER", "Renderer", "-R: Hydra delegate; empty: Karma", "", 0, 0, 1
                ),
                "hydra_renderer",
            ),
            (
                M.MTemplateItemString("ADD_FLAGS", "Extra flags", "More husk flags", "", 0, 0, 1),
                "ADD_FLAGS",
            ),
        )

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        count = len(MTemplateAPI.chunkFrames(chunk))
        arguments = ["--frame", frame(chunk.getStartFrame()), "--frame-count", str(count)]
        arguments += ["--frame-inc", frame(chunk.getByFrame() or 1.0)]
        for attribute, flag in (
            ("output_file", "-o"),
            ("camera", "-c"),
            ("render_settings", "-s"),
            ("hydra_renderer", "-R"),
        ):
            value = job.attributeGetString(attribute)
            if value:
                arguments += [flag, value]
        # Level 2 with "a": Alfred-style progress lines (ALF_PROGRESS n%).
        arguments += [
            "--verbose",
            "2a",
            *MTemplateAPI.splitArguments(job.attributeGetString("ADD_FLAGS"), platform),
        ]
        return [*arguments, job.attributeGetString("job_file")]


_manager = MTemplateAPI.MManager.getUniqueClass()
_manager.installPyTemplate(HoudiniRop())
_manager.installPyTemplate(HoudiniHusk())
