"""The teacher plug-ins a run applies, in order (see ``helper.teachers.TeacherPlugin``)."""
from .ckd import CodedTeacherInputs
from .teacher_cache import TeacherOutputCache

TEACHER_PLUGINS = (CodedTeacherInputs(), TeacherOutputCache())


def add_plugin_options(parser):
    for plugin in TEACHER_PLUGINS:
        group = parser.add_argument_group(plugin.title)
        for option in plugin.options:
            option.add_to(group)


def enabled_plugins(opt):
    return [plugin for plugin in TEACHER_PLUGINS if plugin.enabled(opt)]
