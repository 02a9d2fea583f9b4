"""Parameter groups and frozen parameters.

``build(algo, loss, groups=[...], freeze=[...])``: a *group* names some
parameters (shared variables, or ``fnmatch`` patterns of their names such
as ``"b*"``) and the hyperparameters that differ for them; the rest of the
parameters take the optimizer's values. A group's numbers live in shared
scalars of its own (one per group and hyperparameter), so they can change
without a new graph (:meth:`Group.set`), and they take graph schedules and
PyTensor values as the optimizer's do (:mod:`downhill.settings`). A *frozen*
parameter stays in the loss but is not optimized: it is left out of the
optimizer's parameters, so its gradient is not even built.

:class:`Groups` is the optimizer's table of groups: what the update graph
reads for a parameter (:meth:`Groups.value`, :meth:`Groups.on`), the
groups' share of the graph's structure and updates, and their checkpoint
table (saved, and checked against the optimizer when loaded).
"""

import fnmatch
import numbers

import numpy as np
from pytensor.compile.sharedvalue import SharedVariable

from . import hypergraph, util
from .settings import Settings

__all__ = ["SWITCHES", "split_frozen", "Group", "Groups"]

#: The switch hyperparameters (0 turns a feature off) a group may set: the
#: base class reads them per parameter. The global clipping norm is one
#: norm over all the gradients, so it has one value.
SWITCHES = ("momentum", "weight_decay", "max_gradient_norm", "max_gradient_elem")


def _describe(item):
    return repr(item) if isinstance(item, str) else repr(getattr(item, "name", None) or item)


def _select(items, params, names, what):
    """The positions of the parameters that ``items`` (variables or patterns) name."""
    if isinstance(items, (str, SharedVariable)):
        items = [items]
    try:
        items = list(items)
    except TypeError:
        raise ValueError(f"{what} must be a list of parameters or name patterns, "
                         f"got {items!r}") from None
    chosen = []
    for item in items:
        if isinstance(item, str):
            found = [i for i, name in enumerate(names) if fnmatch.fnmatchcase(name, item)]
            if not found:
                raise ValueError(f"{what}: the pattern {item!r} matches no parameter "
                                 f"(parameters: {', '.join(names)})")
        elif isinstance(item, SharedVariable):
            found = [i for i, p in enumerate(params) if p is item]
            if not found:
                raise ValueError(f"{what}: {_describe(item)} is not one of the optimizer's "
                                 f"parameters ({', '.join(names)})")
        else:
            raise ValueError(f"{what}: {item!r} is neither a parameter (a shared variable) "
                             "nor a name pattern (a string)")
        chosen.extend(i for i in found if i not in chosen)
    return chosen


def split_frozen(params, grads, freeze):
    """The parameters to optimize, their gradients, and the frozen ones.

    Parameters
    ----------
    params : list of SharedVariable
        The parameters found or given.
    grads : list of expressions or None
        Given gradients, one per parameter (None: the loss's).
    freeze : list of SharedVariable or str, or None
        Parameters, or ``fnmatch`` patterns of their names, to leave out.

    Returns
    -------
    params, grads, frozen
        The others and their gradients (None stays None), and the frozen
        parameters.

    Raises
    ------
    ValueError
        For an item that names no parameter, or when every parameter is frozen.
    """
    if freeze is None:
        return params, grads, []
    names = [p.name or f"unnamed{i}" for i, p in enumerate(params)]
    chosen = set(_select(freeze, params, names, "freeze"))
    if len(chosen) == len(params):
        raise ValueError(f"freeze leaves no parameter to optimize: it names all of "
                         f"{', '.join(names)}")
    keep = [i for i in range(len(params)) if i not in chosen]
    return ([params[i] for i in keep], None if grads is None else [list(grads)[i] for i in keep],
            [params[i] for i in sorted(chosen)])


class Group:
    """One group: its parameters and the hyperparameters that differ for them.

    Parameters
    ----------
    name : str
        Its name (in messages, the state and the CLI).
    params : list of SharedVariable
        Its parameters.
    keys : list of str
        Their unique names (checkpoints).
    settings : downhill.settings.Settings
        Its values: one shared scalar per numeric hyperparameter it sets.

    Attributes
    ----------
    name, params, keys, settings
        As given.
    """

    def __init__(self, name, params, keys, settings):
        self.name = name
        self.params = params
        self.keys = keys
        self.settings = settings

    def __repr__(self):
        values = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"Group({self.name!r}, params={self.keys}, {values})"

    @property
    def values(self):
        """The group's hyperparameters and their values in force, by name."""
        return dict(self.settings.values)

    @property
    def shared(self):
        """The group's shared scalars, by name (``group.shared['learning_rate']``)."""
        return dict(self.settings.shared)

    def set(self, **values):
        """Put new values in force for the hyperparameters the group sets.

        A number is written into the group's shared scalar (nothing is
        compiled); a schedule or PyTensor value where a number was, or the
        other way round, changes the graph, which the next call builds.

        Parameters
        ----------
        **values
            New values of hyperparameters the group sets.

        Raises
        ------
        ValueError
            For a hyperparameter the group does not set, or a value out of
            range; nothing changes then.
        """
        for name in values:
            if name not in self.settings.declared:
                raise ValueError(
                    f"group {self.name!r} does not set {name}: it sets "
                    f"{', '.join(self.settings.declared)} (give it when building)")
        checked = self.settings.check(values)
        _refuse_python_schedules(self.name, checked)
        self.settings.defaults.update(checked)
        self.settings.configure({})


def _refuse_python_schedules(group, values):
    for name, value in values.items():
        if callable(value) and not hypergraph.is_graph_schedule(value):
            raise ValueError(
                f"group {group!r}: {name}={value!r} is a Python function or a "
                "validation-driven schedule, which a group cannot take; give a number, "
                "a graph schedule (downhill.schedules) or a PyTensor shared variable")


class Groups:
    """The parameter groups of one optimizer, and what its graph reads per parameter.

    Parameters
    ----------
    opt : Optimizer
        The optimizer (its parameters, names, declarations and settings).
    spec : list of dict, dict, or None
        The groups: a list of dicts, each with ``"params"`` (parameters or
        name patterns), an optional ``"name"`` and hyperparameter values; or
        a dict from a parameter or pattern to its values.

    Raises
    ------
    ValueError
        For a group without parameters, a parameter in two groups, an
        unknown hyperparameter or one that cannot differ per group, or a
        value out of range.
    """

    def __init__(self, opt, spec):
        self._opt = opt
        self.groups = []
        self._by_param = {}
        for i, entry in enumerate(_entries(spec)):
            self._add(i, entry)

    def _add(self, i, entry):
        opt = self._opt
        if not isinstance(entry, dict):
            raise ValueError(f"groups: entry {i} must be a dict with 'params' and "
                             f"hyperparameter values, got {entry!r}")
        entry = dict(entry)
        name = str(entry.pop("name", f"group{i}"))
        if any(g.name == name for g in self.groups):
            raise ValueError(f"groups: two groups are named {name!r}")
        if "params" not in entry:
            raise ValueError(f"group {name!r} has no 'params' (its parameters, or name "
                             "patterns such as 'b*')")
        chosen = _select(entry.pop("params"), opt._params, opt._names, f"group {name!r}")
        declared = opt.hyperparameters()
        for hyper in entry:
            _check_groupable(name, hyper, declared)
        for index in chosen:
            other = self._by_param.get(id(opt._params[index]))
            if other is not None:
                raise ValueError(f"parameter {opt._keys[index]!r} is in group {other.name!r} "
                                 f"and in group {name!r}; a parameter belongs to one group")
        subset = {hyper: declared[hyper] for hyper in entry}
        settings = Settings(subset, opt._dtype, f"{type(opt).__name__} group {name!r}", entry)
        _refuse_python_schedules(name, settings.defaults)
        settings.counter = opt._settings.counter   # graph schedules read the optimizer's
        for attr, var in settings.shared.items():
            var.name = f"{attr}[{name}]"
        settings.configure({})
        group = Group(name, [opt._params[k] for k in chosen], [opt._keys[k] for k in chosen],
                      settings)
        self.groups.append(group)
        for param in group.params:
            self._by_param[id(param)] = group

    def __iter__(self):
        return iter(self.groups)

    def __len__(self):
        return len(self.groups)

    def _setting(self, param, name):
        group = self._by_param.get(id(param))
        return None if group is None or name not in group.settings.declared \
            else group.settings

    def value(self, attr, like):
        """What the graph reads for a shared scalar's hyperparameter, for ``like``.

        Parameters
        ----------
        attr : str
            The shared scalar's name (``"learning_rate"``, ``"ewma"``).
        like : pytensor Variable
            A parameter (its group decides), or anything else (the
            optimizer's value).

        Returns
        -------
        pytensor scalar

        Raises
        ------
        ValueError
            When the value is read for no parameter in particular (once for
            all of them) but a group sets it.
        """
        group = self._by_param.get(id(like))
        if group is not None and attr in group.settings.shared:
            return group.settings.graph_value(attr)
        if group is None and not any(like is p for p in self._opt._params):
            # read once for all the parameters (NAdam's momentum schedule)
            for g in self.groups:
                if attr in g.settings.shared:
                    name = g.settings.by_shared[attr].name
                    raise ValueError(
                        f"group {g.name!r}: {name} cannot differ per group for "
                        f"{type(self._opt).__name__} with these settings, which reads it "
                        "once for all the parameters")
        return self._opt._settings.graph_value(attr)

    def current(self, name, param):
        """The number in force for ``param`` (a schedule's latest value).

        Parameters
        ----------
        name : str
            A hyperparameter kept in a shared scalar of its name
            (``"learning_rate"``).
        param : SharedVariable

        Returns
        -------
        float
        """
        settings = self._setting(param, name) or self._opt._settings
        return settings.shared[name].get_value()

    def on(self, param, name):
        """Whether a switch hyperparameter is on for ``param``.

        Parameters
        ----------
        param : SharedVariable
        name : str
            ``"momentum"``, ``"weight_decay"``, ...

        Returns
        -------
        bool
        """
        settings = self._setting(param, name) or self._opt._settings
        return settings.on(name)

    def clips(self):
        """Whether a group sets a clipping limit.

        Returns
        -------
        bool
        """
        return any(g.settings.on(n) for g in self.groups for n in SWITCHES[2:]
                   if n in g.settings.declared)

    def clipping(self, params, values, limits):
        """Per parameter: the clipping values in force and what the graph reads.

        Parameters
        ----------
        params : list of SharedVariable
        values : dict
            The optimizer's values in force.
        limits : dict
            What the graph reads for each limit, the optimizer's.

        Returns
        -------
        list of (dict, dict) or None
            None when no group sets a clipping limit.
        """
        if not self.clips():
            return None
        each = []
        for param in params:
            group = self._by_param.get(id(param))
            if group is None:
                each.append((values, limits))
                continue
            mine = {n: v for n, v in group.settings.values.items() if n in SWITCHES[2:]}
            each.append((dict(values, **mine), dict(limits, **{
                n: group.settings.graph_value(n) for n in mine})))
        return each

    def structure(self):
        """The groups' share of the graph's structure.

        Returns
        -------
        tuple
        """
        return tuple(("group", g.name, g.settings.structure()) for g in self.groups)

    def graph_updates(self):
        """The groups' graph schedules' values for the next update.

        Returns
        -------
        list of (SharedVariable, expression)
        """
        pairs = []
        for g in self.groups:
            pairs.extend(p for p in g.settings.graph_updates() if p[0] is not g.settings.counter)
        return pairs

    def _frozen(self):
        return [p.name or f"unnamed{i}" for i, p in enumerate(self._opt._frozen)]

    def state(self):
        """The checkpoint table: each group's parameters and numbers, the frozen.

        Returns
        -------
        dict
            ``groups`` (a list of ``name``, ``params``, ``hyperparameters``)
            and ``frozen``.
        """
        count = self._opt._settings.count()
        table = []
        for g in self.groups:
            numbers = {}
            for name, value in g.settings.values.items():
                hyper = g.settings.declared[name]
                if hypergraph.is_graph_schedule(value):
                    value = g.settings.scheduled_value(hyper, value, count)
                elif hypergraph.is_symbolic(value):
                    value = hypergraph.current_value(value)
                if value is not None:
                    numbers[name] = value
            table.append({"name": g.name, "params": list(g.keys), "hyperparameters": numbers})
        return {"groups": table, "frozen": self._frozen()}

    def check_state(self, saved):
        """Check a saved table against the groups; return the numbers to load.

        A state saved without a groups table (before groups existed) fits
        an optimizer without groups.

        Parameters
        ----------
        saved : dict or None
            The ``groups`` field of a state.

        Returns
        -------
        list of dict
            Per group, the saved numbers that become its values.

        Raises
        ------
        ValueError
            Naming the first group whose name, parameters or hyperparameters
            differ, or frozen parameters that differ.
        """
        saved = {"groups": [], "frozen": []} if saved is None else saved
        if not isinstance(saved, dict) or not isinstance(saved.get("groups", []), list):
            raise ValueError(f"state field groups must be a table, got {saved!r}")
        frozen = saved.get("frozen", [])
        if list(frozen) != self._frozen():
            raise ValueError(f"state field groups.frozen is {frozen!r}, but this optimizer "
                             f"freezes {self._frozen()!r}")
        entries = saved.get("groups", [])
        mine = [g.name for g in self.groups]
        theirs = [e.get("name") if isinstance(e, dict) else e for e in entries]
        if theirs != mine:
            raise ValueError(f"state field groups holds the groups {theirs!r}, but this "
                             f"optimizer has {mine!r}")
        loads = []
        for g, entry in zip(self.groups, entries):
            if list(entry.get("params", [])) != g.keys:
                raise ValueError(f"state field groups: group {g.name!r} holds "
                                 f"{entry.get('params')!r}, but here {g.keys!r}")
            values = entry.get("hyperparameters", {})
            if not isinstance(values, dict) or set(values) != set(g.settings.declared):
                raise ValueError(f"state field groups: group {g.name!r} sets "
                                 f"{sorted(values)!r}, but here "
                                 f"{sorted(g.settings.declared)!r}")
            # numbers load; a schedule or PyTensor value given when building stays
            keep = {n: v for n, v in values.items()
                    if _number(v) and _number(g.settings.values[n])}
            try:
                loads.append(g.settings.check(keep))
            except ValueError as error:
                raise ValueError(f"state field groups: group {g.name!r}: {error}") from None
        return loads

    def load_state(self, loads):
        """Put numbers checked by :meth:`check_state` in force.

        Parameters
        ----------
        loads : list of dict
        """
        for g, numbers in zip(self.groups, loads):
            g.settings.defaults.update(numbers)
            g.settings.configure({})


def _number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_groupable(group, name, declared):
    if name not in declared:
        close = util.closest_name(name, declared)
        hint = f"; did you mean {close!r}?" if close else ""
        raise ValueError(f"group {group!r}: unknown hyperparameter {name!r}{hint}")
    hyper = declared[name]
    if not hyper.shared or hyper.structural or (hyper.switch and name not in SWITCHES):
        raise ValueError(
            f"group {group!r}: {name} cannot differ per group: it is one setting of the "
            "whole optimizer (a group sets numeric hyperparameters of the update: "
            "learning_rate, momentum, weight_decay, the algorithm's own, ...)")


def _entries(spec):
    """The groups as a list of dicts (a mapping from parameter or pattern
    to values gives one group per key)."""
    if spec is None:
        return []
    if isinstance(spec, dict):
        entries = []
        for i, (key, values) in enumerate(spec.items()):
            if not isinstance(values, dict):
                raise ValueError(f"groups: the values given for {_describe(key)} must be a "
                                 f"dict of hyperparameters, got {values!r}")
            name = key if isinstance(key, str) else (getattr(key, "name", None) or f"group{i}")
            entries.append(dict(values, params=[key], name=name))
        return entries
    if isinstance(spec, (str, bytes)) or not hasattr(spec, "__iter__"):
        raise ValueError(f"groups must be a list of dicts or a dict from parameters or "
                         f"name patterns to values, got {spec!r}")
    return list(spec)

