"""The one protocol of what a distillation command line turns on beside its method: a logit
modifier (LSKD, CTKD), an ``-a`` term (TTM), an optimizer strategy (DOT), a named recipe, a
teacher plug-in (CKD, the teacher-output cache). ``helper.components`` lists them in the order
they apply and name the run's folder; the resolver, the entry points, the summaries and the GPU
checks ask each one, so none of them names any.

Every hook receives the run's options as a namespace (``opt``: the command line's, every
default filled in; or a stored run's record, which may lack newer options) and the method's
class where it matters."""
from core.util import UserError


def value(opt, option):
    """``option``'s value in ``opt``, its default where an older record lacks it."""
    return getattr(opt, option.dest, option.default)


def folder_part(values):
    """``_dest`` for a switch that is on, ``_dest:value`` for the others (``{dest: value}``)."""
    return ''.join(f'_{dest}' if v is True else f'_{dest}:{v}' for dest, v in values.items())


def add_switched_group(parser, title, options, on):
    """``options`` in a group of their own, the first the switch that turns the rest on; unless
    ``on`` (the switch is in the command line), --help lists the switch alone and says how to
    see the rest."""
    switch = options[0]
    group = parser.add_argument_group(title, None if on or len(options) == 1 else
                                      f'(give {switch.flag} with --help to see its options)')
    for option in options:
        option.add_to(group, hidden=not on and option is not switch)


class Component:
    """``options``: its flags (``distiller_zoo.options.Option``), the first its switch, listed
    by --help under ``title``; ``label``: what a summary adds to the method's name when it is
    on ('' for nothing); ``checks``: ``(name, argv)`` command lines the GPU check runs it with.
    Changing one of ``defining`` makes another experiment (a resumed run refuses it). Its
    further options given without ``switch`` (how messages say to turn it on) are refused."""
    title = ''
    options = ()
    label = ''
    checks = ()

    @property
    def flag(self):
        """Its main flag, in messages."""
        return self.options[0].flag

    @property
    def switch(self):
        return self.flag

    @property
    def defining(self):
        return tuple(option.dest for option in self.options)

    def enabled(self, opt):
        """Whether the run has it on."""
        return bool(value(opt, self.options[0]))

    def add_options(self, parser, given, distill):
        """Its options in a group; with ``given`` (the words of a command line), --help lists
        the further ones only once its switch is given."""
        on = given is None or any(flag in given for flag in self.options[0].flags)
        add_switched_group(parser, self.title, self.options, on)

    def changed(self, opt):
        """Its options whose values differ from their defaults, ``{dest: value}``."""
        return {o.dest: value(opt, o) for o in self.options if value(opt, o) != o.default}

    def check_given(self, opt, method):
        """Before any default applies: refuse (``UserError``) what would change nothing, such
        as a further option given without the switch (a default written out is taken)."""
        if self.enabled(opt):
            return
        for option in self.options[1:]:
            if value(opt, option) != option.default:
                raise UserError(f'{option.flag} is an option of {self.switch}, which this '
                                f'command does not give: add {self.switch} or leave it out')

    def run_defaults(self, opt, method, teacher):
        """``(what, {dest: value})``: the values it sets for the pair unless the command line
        gives them (``teacher``: the teacher's architecture, None when unknown)."""
        return '', {}

    def check_resolved(self, opt, method):
        """Once the weights are known: refuse what the run would not use."""

    def check(self, config, method):
        """With the whole ``RunConfig``: refuse what it cannot do for the run."""

    def method_fields(self, opt):
        """The ``MethodConfig`` fields it sets (``distiller_zoo.base.MethodConfig``)."""
        return {}

    def suffix(self, opt):
        """What the run folder's name gets: its changed options."""
        return folder_part(self.changed(opt))

    def describe(self, config):
        """A line for the start of a run ('' for nothing to say)."""
        return ''

    def labelled(self, opt):
        """Whether a summary adds ``label`` to the run's method."""
        return bool(self.label) and self.enabled(opt)

    def upgrade(self, record):
        """An older version's stored options, in this version's terms (a dict)."""
        return record
