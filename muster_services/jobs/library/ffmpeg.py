"""Built-in template 48 "FFmpeg" (Muster's id): image frames to a movie, one
process for the whole range (kTemplateSingleHost), usually a job that
depends on the render job (renderers.md §14):

    ffmpeg -y -nostdin -framerate <fps> -start_number <start> -i <input pattern>
           -frames:v <end - start + 1> <codec arguments> <output file>
"""

from typing import Any

import MTemplateAPI

PATH_ITEM = "FFMPEG_PATH"
ABORT: tuple[str, ...] = ()
ERRORS = (
    r"No such file or directory",
    r"Impossible to open",
    r"Output file is empty",
    r"Conversion failed!",
    r"Error opening (?:input|output)",
)
WARNINGS: tuple[str, ...] = ()


class FFmpegTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(48)
        self.setName("FFmpeg")
        self.setDescription(
            "FFmpeg: numbered image files to a movie, in one process on one node: ffmpeg -y "
            "-framerate <fps> -start_number <start> -i <input pattern> -frames:v <count> "
            "<codec arguments> <output file>."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateSingleHost)
        M = MTemplateAPI
        for item, attribute in (
            (
                M.MTemplateItemFile(
                    "INPUT",
                    "Input frames",
                    "An image2 pattern (/renders/shot_%04d.png)",
                    "",
                    0,
                    1,
                    1,
                    "*.*",
                ),
                "input_pattern",
            ),
            (
                M.MTemplateItemFile(
                    "OUTPUT",
                    "Output movie",
                    "The movie file (/renders/shot.mp4)",
                    "",
                    0,
                    1,
                    1,
                    "*.*",
                ),
                "output_file",
            ),
            (
                M.MTemplateItemDouble(
                    "FPS", "Frame rate", "Frames per second of the input", 24.0, 0, 0, 1
                ),
                "frame_rate",
            ),
            (
                M.MTemplateItemString(
                    "CODEC_ARGS",
                    "Codec arguments",
                    "Output options, split like a shell would",
                    "-c:v libx264 -pix_fmt yuv420p",
                    0,
                    0,
                    1,
                ),
                "ffmpeg_arguments",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        # The stats line counts the frames written so far, of the chunk's range.
        self.addProgressRegex(r"^frame=\s*(?P<frame>\d+)\s")
        M.enableApplication(
            self,
            PATH_ITEM,
            "ffmpeg",
            {"linux": "ffmpeg", "windows": "ffmpeg.exe", "macos": "ffmpeg"},
        )

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.applicationPath(clientTemplatePreferences, PATH_ITEM, pathOut)

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        frame = MTemplateAPI.formatFrame
        start, end = float(chunk.getStartFrame()), float(chunk.getEndFrame())
        fps = job.attributeGetFloat("frame_rate") if "frame_rate" in job.attributeList() else 24.0
        if "ffmpeg_arguments" in job.attributeList():
            codec = MTemplateAPI.splitArguments(
                job.attributeGetString("ffmpeg_arguments"), platform
            )
        else:
            codec = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
        arguments = ["-y", "-nostdin", "-framerate", frame(fps), "-start_number", frame(start)]
        arguments += ["-i", job.attributeGetString("input_pattern")]
        arguments += ["-frames:v", frame(end - start + 1), *codec]
        return [*arguments, job.attributeGetString("output_file")]

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.checkLogPatterns(log, errors=ERRORS, warnings=WARNINGS, abort=ABORT)

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode)


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(FFmpegTemplate())
