"""Built-in template 1000 "Command line": any program, once per chunk.

The job names the program (`executable`), its arguments (`arguments`, with
frame tokens, split like a POSIX shell would) and a working folder; the
tokens are MTemplateAPI.expandTokens' (docs/template-library.md).
"""

from typing import Any

import MTemplateAPI

# CGRU's line protocol for scripts (renderers.md §15), read as errors/warnings.
ABORT = (r"\[ PARSER FATAL ERROR \]",)
ERRORS = (r"\[ PARSER ERROR \]", r"\[ PARSER BAD RESULT \]")
WARNINGS = (r"\[ PARSER WARNING \]",)


class CommandLineTemplate(MTemplateAPI.MTemplate):
    def __init__(self) -> None:
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1000)
        self.setName("Command line")
        self.setDescription(
            "Runs any program once per chunk. Job attributes: executable (path of the program), "
            "arguments (a command line with frame tokens such as {start} {end} {step}, split "
            "like a shell would), working_folder (optional). The job's environment is added."
        )
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        # The lines onCheckLog looks for, marked by the node in the render log.
        self.logErrorPatterns = ABORT + ERRORS
        self.logWarningPatterns = WARNINGS
        for item, attribute in (
            (
                MTemplateAPI.MTemplateItemFile(
                    "EXECUTABLE", "Executable", "Path of the program", "", 0, 1, 1, "*"
                ),
                "executable",
            ),
            (
                MTemplateAPI.MTemplateItemString(
                    "ARGUMENTS",
                    "Arguments",
                    "Command line; tokens {start} {end} {step} {start:4} {frame} {slice} "
                    "{chunk} {job} {@attribute} {*attribute}",
                    "",
                    0,
                    0,
                    1,
                ),
                "arguments",
            ),
            (
                MTemplateAPI.MTemplateItemFolder(
                    "WORKING_FOLDER",
                    "Working folder",
                    "Starting folder of the program",
                    "",
                    0,
                    0,
                    1,
                ),
                "working_folder",
            ),
        ):
            self.addSubmissionItem(item)
            self.addMapping(item.getName(), attribute)
        for section in self.platforms():
            section.setPlatformEnabled(True)
            section.setEnabledByDefault(True)
            section.setEnableErrorCheck(True)
            section.setDetectionLogic(MTemplateAPI.kProcessDirect)
        self.addProgressRegex(r"(?:PROGRESS|Progress): *(\d+(?:\.\d+)?) *%")

    def onGetApplicationPath(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        pathOut.setString(MTemplateAPI.expandTokens("{@executable}", job, None))
        if not pathOut.getString().strip():
            return MTemplateAPI.MTemplateError(
                1,
                "the job has no executable attribute",
                MTemplateAPI.MTemplateError.kTemplateErrorTypeError,
            )
        return MTemplateAPI.MTemplateError()

    def onGetApplicationStartingFolder(
        self, job: Any, clientTemplatePreferences: Any, pathOut: Any
    ) -> MTemplateAPI.MTemplateError:
        pathOut.setString(MTemplateAPI.expandTokens("{@working_folder}", job, None))
        return MTemplateAPI.MTemplateError()

    def onBuildCommandLine(
        self, platform: int, job: Any, chunk: Any, clientTemplatePreferences: Any, instanceNum: int
    ) -> list[str]:
        return MTemplateAPI.expandArguments(["{*arguments}"], job, chunk)

    def onBuildEnvironment(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, existingEnvironment: Any
    ) -> Any:
        for key in existingEnvironment.getKeys():
            value = existingEnvironment.getValue(key)
            existingEnvironment.setValue(key, MTemplateAPI.expandTokens(value, job, chunk))
        return existingEnvironment

    def onCheckLog(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, log: str
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.checkLogPatterns(log, errors=ERRORS, warnings=WARNINGS, abort=ABORT)

    def onCheckExitCode(
        self, job: Any, chunk: Any, clientTemplatePreferences: Any, exitCode: int
    ) -> MTemplateAPI.MTemplateError:
        return MTemplateAPI.exitCodeError(exitCode)


MTemplateAPI.MManager.getUniqueClass().installPyTemplate(CommandLineTemplate())
