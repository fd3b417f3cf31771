"""A small studio template for the agent's tests (its source is what the
dispatcher stores in template_versions and serves with GetTemplateSource).

It runs `/bin/sh -c SCRIPT` where SCRIPT is the job's `script` attribute
(so a test picks what the "renderer" prints), with the chunk's frames and
the node's client preference RENDERER_NAME in the environment. A log line
`ERROR: ...` fails the chunk, `ABORT: ...` aborts it while it runs,
`WARNING: ...` makes it succeed with warnings; `Frame N done` lines drive
the progress. The job attribute `raise` names a callback that raises,
`hang` one that never answers.
"""

SOURCE = r"""
import time

import MTemplateAPI


class StudioShell(MTemplateAPI.MTemplate):
    def __init__(self):
        MTemplateAPI.MTemplate.__init__(self)
        self.setID(1701)
        self.setName("Studio shell")
        self.setDescription("a shell script per chunk")
        self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
        self.addSubmissionItem(
            MTemplateAPI.MTemplateItemString("script", "Script", "what runs", "echo hi", 0, 1, 1)
        )
        self.addFrameDoneRegex(r"^Frame \d+ done")
        self.addProgressRegex(r"^Progress (\d+)%")
        self.platformLinux.setPlatformEnabled(True)
        self.platformLinux.setEnableErrorCheck(True)
        self.platformLinux.addClientConfigurationItem(
            MTemplateAPI.MTemplateItemFile(
                "SHELL_PATH", "Shell", "the shell", "/bin/sh", 0, 0, 1, "*"
            )
        )
        self.platformLinux.addClientConfigurationItem(
            MTemplateAPI.MTemplateItemString(
                "RENDERER_NAME", "Renderer", "its name", "default-renderer", 0, 0, 1
            )
        )

    def _misbehave(self, job, name):
        if job.attributeGetString("raise") == name:
            raise RuntimeError(name + " exploded on purpose")
        if job.attributeGetString("hang") == name:
            time.sleep(3600)

    def onGetApplicationPath(self, job, clientTemplatePreferences, pathOut):
        self._misbehave(job, "onGetApplicationPath")
        pathOut.setString(clientTemplatePreferences["SHELL_PATH"])
        return MTemplateAPI.MTemplateError()

    def onBuildCommandLine(self, platform, job, chunk, clientTemplatePreferences, instanceNum):
        self._misbehave(job, "onBuildCommandLine")
        return ["-c", job.attributeGetString("script")]

    def onBuildEnvironment(self, job, chunk, clientTemplatePreferences, existingEnvironment):
        existingEnvironment.setValue("FIRST_FRAME", str(int(chunk.getStartFrame())))
        existingEnvironment.setValue("LAST_FRAME", str(int(chunk.getEndFrame())))
        existingEnvironment.setValue("RENDERER_NAME", clientTemplatePreferences["RENDERER_NAME"])
        return existingEnvironment

    def onCheckLog(self, job, chunk, clientTemplatePreferences, log):
        self._misbehave(job, "onCheckLog")
        return MTemplateAPI.checkLogPatterns(
            log, errors=[r"^ERROR: "], warnings=[r"^WARNING: "], abort=[r"^ABORT: "]
        )

    def onCheckExitCode(self, job, chunk, clientTemplatePreferences, exitCode):
        self._misbehave(job, "onCheckExitCode")
        return MTemplateAPI.exitCodeError(exitCode, success=(0, 3))

    def onCustomMessage(self, message):
        print("custom message for 1701: " + message, flush=True)




MTemplateAPI.MManager.getUniqueClass().installPyTemplate(StudioShell())
"""
