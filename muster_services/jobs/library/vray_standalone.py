"""Built-in template 1003 "V-Ray standalone": `vray -sceneFile=<s> -frames=<s>-<e>,<step>`
(renderers.md §3).

One process per chunk from one .vrscene; a scene attribute with a frame
pattern (`shot.####.vrscene`: one export per frame) renders one frame per
process instead, without `-frames`.
"""

from typing import Any

import MTemplateAPI

PATH_ITEM = "VRAY_PATH"
ABORT = (r"error: Could not obtain a license",)
ERRORS = (r"\berror:",)
WARNINGS = (r"\bwarning:",)


class VRayTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1003)
        self.setName("V-Ray standalone")
        self.setDescription(
            "V-Ray standalone: vray -sceneFile=<scene> -frames=<start>-<end>,<step>."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE",
                    "Scene file",
                    "The .vrscene (# for the frame: one file per frame)",
                    "",
                    0,
                    1,
                    1,
                    "*.vrscene",
                ),
                "job_file",
            ),
            (
                M.MTemplateItemFile(
                    "OUTPUT", "Output image", "-imgFile; empty: the scene's", "", 0, 0, 1, "*.*"
                ),
                "output_file",
            ),
            (M.MTemplateItemString("CAMERA", "Camera", "-camera", "", 0, 0, 1), "camera"),
            (
                M.MTemplateItemInteger(
                    "THREADS", "Threads", "-numThreads; 0: all cores", 0, 0, 0, 1
                ),
                "threads",
            ),
            (
                M.MTemplateItemString("ADD_FLAGS", "Extra flags", "More vray flags", "", 0, 0, 1),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "V-Ray standalone",
            {
                "windows": "C:\\Program Files\\Chaos Group\\V-Ray\\Standalone for x64"
                "\\bin\\x64\\vc14\\vray.exe",
                "linux": "/usr/ChaosGroup/V-Ray/Standalone_for_linux_x64/bin/linux_x64"
                "/gcc-4.x/vray",
            },
        )
        self.addProgressRegex(r"Rendering image.*:[ ]+([0-9]+(?:\.[0-9]+)?)%")
        self.addFrameDoneRegex(r"Frame took")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        scene = job.attributeGetString("job_file")
        if MTemplateAPI.hasFramePattern(scene):
            one = MTemplateAPI.singleFrame(chunk, "V-Ray with one .vrscene per frame")
            arguments = [f"-sceneFile={MTemplateAPI.framePath(scene, one)}"]
        else:
            arguments = [
                f"-sceneFile={scene}",
                f"-frames={frame(chunk.getStartFrame())}-{frame(chunk.getEndFrame())},"
                f"{frame(chunk.getByFrame() or 1.0)}",
            ]
        output = job.attributeGetString("output_file")
        if output:
            arguments.append(f"-imgFile={output}")
        arguments += ["-display=0", "-autoClose=1", "-interactive=0", "-verboseLevel=3"]
        arguments += ["-showProgress=2", "-progressUseCR=0"]
        camera = job.attributeGetString("camera")
        if camera:
            arguments.append(f"-camera={camera}")
        threads = job.attributeGetInt("threads")
        if threads > 0:
            arguments.append(f"-numThreads={threads}")
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


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(VRayTemplate())
