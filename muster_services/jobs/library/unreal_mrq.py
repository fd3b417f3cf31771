"""Built-in template 1013 "Unreal Movie Render Queue": one level sequence
rendered by `UnrealEditor-Cmd.exe <project> [<map>] -game -LevelSequence=<seq>
-MoviePipelineConfig=<preset> -windowed -log -stdout -allowstdoutlogverbosity
-unattended` (renderers.md §13; Windows).

Epic's smallest distributable unit is a shot, not a frame (real-time
rendering reuses earlier frames), so a job is one process on one node
(kTemplateSingleHost) and the frame range is the sequence's.
"""

from typing import Any

import MTemplateAPI

PATH_ITEM = "UNREAL_PATH"
ABORT = (r"DXGI_ERROR_DEVICE_REMOVED",)
ERRORS = (
    r"LogPython: Error:",
    r"LogWindows: FPlatformMisc::RequestExitWithStatus\(1,",
    r"LogAppleProResMedia: Error: Failed to",
)
WARNINGS = (r"LogMovieRenderPipeline: Warning:",)


class UnrealTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1013)
        self.setName("Unreal Movie Render Queue")
        self.setDescription(
            "Unreal Engine Movie Render Queue: one level sequence with a pipeline preset, in one "
            "UnrealEditor-Cmd process (Windows)."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateSingleHost)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "SCENEFILE", "Project", "The .uproject", "", 0, 1, 1, "*.uproject"
                ),
                "job_file",
            ),
            (
                M.MTemplateItemString(
                    "MAP", "Map", "Map to load (/Game/Maps/Main); empty: the default", "", 0, 0, 1
                ),
                "unreal_map",
            ),
            (
                M.MTemplateItemString(
                    "LEVEL_SEQUENCE", "Level sequence", "-LevelSequence asset path", "", 0, 1, 1
                ),
                "level_sequence",
            ),
            (
                M.MTemplateItemString(
                    "PIPELINE_CONFIG",
                    "Pipeline preset",
                    "-MoviePipelineConfig asset path",
                    "",
                    0,
                    1,
                    1,
                ),
                "movie_pipeline_config",
            ),
            (
                M.MTemplateItemString("ADD_FLAGS", "Extra flags", "More editor flags", "", 0, 0, 1),
                "ADD_FLAGS",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        M.enableApplication(
            self,
            PATH_ITEM,
            "UnrealEditor-Cmd",
            {
                "windows": "C:\\Program Files\\Epic Games\\UE_5.4\\Engine\\Binaries\\Win64"
                "\\UnrealEditor-Cmd.exe"
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
        arguments = [job.attributeGetString("job_file")]
        if job.attributeGetString("unreal_map"):
            arguments.append(job.attributeGetString("unreal_map"))
        arguments += ["-game", f"-LevelSequence={job.attributeGetString('level_sequence')}"]
        arguments.append(f"-MoviePipelineConfig={job.attributeGetString('movie_pipeline_config')}")
        arguments += ["-windowed", "-log", "-stdout", "-allowstdoutlogverbosity", "-unattended"]
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


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(UnrealTemplate())
