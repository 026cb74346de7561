"""The teacher plug-ins a run applies, in order (see ``helper.teachers.TeacherPlugin``)."""
from .ckd import CodedTeacherInputs
from .teacher_cache import TeacherOutputCache

TEACHER_PLUGINS = (CodedTeacherInputs(), TeacherOutputCache())


def add_plugin_options(parser, given=None):
    """Each plug-in's options in a group; with ``given`` (the words of a command line), a
    plug-in's further options are listed by --help only once its first option is given."""
    for plugin in TEACHER_PLUGINS:
        switch = plugin.options[0]
        on = given is None or any(flag in given for flag in switch.flags)
        group = parser.add_argument_group(plugin.title, None if on or len(plugin.options) == 1
                                          else f'(give {switch.flags[0]} with --help to see '
                                               f'its options)')
        for option in plugin.options:
            option.add_to(group, hidden=not on and option is not switch)


def enabled_plugins(opt):
    return [plugin for plugin in TEACHER_PLUGINS if plugin.enabled(opt)]
