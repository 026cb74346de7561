"""The teacher plug-ins a run applies, in order (see ``helper.teachers.TeacherPlugin``)."""
from distiller_zoo.options import add_switched_group
from .ckd import CodedTeacherInputs
from .teacher_cache import TeacherOutputCache

TEACHER_PLUGINS = (CodedTeacherInputs(), TeacherOutputCache())


def add_plugin_options(parser, given=None):
    """Each plug-in's options in a group; with ``given`` (the words of a command line), a
    plug-in's further options are listed by --help only once its first option is given."""
    for plugin in TEACHER_PLUGINS:
        on = given is None or any(flag in given for flag in plugin.options[0].flags)
        add_switched_group(parser, plugin.title, plugin.options, on)

