"""State variables: the averages, velocities, counters and generators an
algorithm keeps between steps.

Each is a PyTensor shared variable made on first use by one helper, named
after its parameter (``w_g2_ewma``) and kept in creation order, so that it
can be listed, saved, restored and reset. State lives as long as the
optimizer: averages and velocities carry over from one ``iterate()`` call
to the next.
"""

import numpy as np
import pytensor

from .util import shared_like

__all__ = ["StateVariables"]


class StateVariables:
    """The state variables of one optimizer, by ``(parameter index, suffix)``.

    Optimizer-wide state (Adam's step counter) has the index None.

    Parameters
    ----------
    params : list of SharedVariable
        The optimizer's parameters.
    names : list of str
        Their names (for the variables' names).
    keys : list of str
        Their unique names (for checkpoints).
    """

    def __init__(self, params, names, keys):
        self._params = params
        self._names = names
        self._keys = keys
        self.variables = {}  # (index, suffix) -> SharedVariable, in creation order
        self.initial = {}    # (index, suffix) -> the value it was made with

    def index(self, param):
        """The position of ``param`` among the parameters.

        Parameters
        ----------
        param : SharedVariable
            One of the parameters.

        Returns
        -------
        int
        """
        return next(i for i, p in enumerate(self._params) if p is param)

    def like(self, param, suffix, value=0, trailing=()):
        """The state variable ``suffix`` of ``param``, shaped like it, made on first use.

        Parameters
        ----------
        param : SharedVariable
            One of the parameters.
        suffix : str
            The variable's name after the parameter's, e.g. ``"g2_ewma"``.
        value : float, optional
            Initial value of every element.
        trailing : tuple of int, optional
            Axes after the parameter's (``adagrad_window``'s window of
            past gradients: ``(10,)``).

        Returns
        -------
        SharedVariable

        Raises
        ------
        ValueError
            If the variable exists with other trailing axes.
        """
        index = self.index(param)
        key = (index, suffix)
        trailing = tuple(int(n) for n in trailing)
        if key not in self.variables:
            if trailing:
                current = param.get_value(borrow=True)
                var = pytensor.shared(
                    np.full(current.shape + trailing, value, dtype=current.dtype),
                    name=f"{self._names[index]}_{suffix}", shape=param.type.shape + trailing)
            else:
                var = shared_like(param, suffix, value, name=self._names[index])
            self.variables[key] = var
            self.initial[key] = value
        var = self.variables[key]
        have = var.type.shape[var.type.ndim - len(trailing):] if trailing else ()
        if var.type.ndim != param.type.ndim + len(trailing) or have != trailing:
            extra = var.type.shape[param.type.ndim:]
            raise ValueError(
                f"the state variable {var.name} has trailing axes {extra}, not {trailing}: it "
                "was made for other settings; make a new optimizer for these")
        return var

    def reduced(self, param, suffix, axis, value=0):
        """The state variable ``suffix`` of ``param``, shaped like it without one
        axis, made on first use (Adafactor's row and column factors).

        Parameters
        ----------
        param : SharedVariable
            One of the parameters, of at least one dimension.
        suffix : str
            The variable's name after the parameter's, e.g. ``"g2_rows"``.
        axis : int
            The parameter's axis the variable does not have (negative counts
            from the end).
        value : float, optional
            Initial value of every element.

        Returns
        -------
        SharedVariable
        """
        index = self.index(param)
        key = (index, suffix)
        if key not in self.variables:
            current = param.get_value(borrow=True)
            axis %= current.ndim
            shape = current.shape[:axis] + current.shape[axis + 1:]
            static = param.type.shape[:axis] + param.type.shape[axis + 1:]
            self.variables[key] = pytensor.shared(
                np.full(shape, value, dtype=current.dtype),
                name=f"{self._names[index]}_{suffix}", shape=static)
            self.initial[key] = value
        return self.variables[key]

    def scalar(self, suffix, value=0, dtype="int64"):
        """The optimizer-wide state scalar ``suffix``, made on first use.

        Parameters
        ----------
        suffix : str
            Its name, e.g. ``"t"``.
        value : number, optional
            Its initial value.
        dtype : str, optional
            Its dtype.

        Returns
        -------
        SharedVariable
        """
        key = (None, suffix)
        if key not in self.variables:
            self.variables[key] = pytensor.shared(np.asarray(value, dtype=dtype), name=suffix)
            self.initial[key] = value
        return self.variables[key]

    def generator(self, param, make):
        """The random generator variable of ``param``, made on first use.

        Parameters
        ----------
        param : SharedVariable
            One of the parameters.
        make : callable
            ``make(index)`` returns a new ``numpy.random.Generator``.

        Returns
        -------
        SharedVariable
            Named ``NAME_rng``; it is not reset to an initial value.
        """
        index = self.index(param)
        key = (index, "rng")
        if key not in self.variables:
            self.variables[key] = pytensor.shared(make(index), name=f"{self._names[index]}_rng")
        return self.variables[key]

    def adopt(self, param, var, taken=()):
        """Keep a state variable of ``param`` that an algorithm made itself.

        For downhill 0.4 algorithms (``_get_updates_for``), which make their
        state with ``downhill.util.shared_like(param, suffix)``: the variable
        is kept under the suffix of its name (``w_g2`` gives ``g2``), so it
        is listed, saved and restored like the others, and reset to its
        initial value if it was made uniform.

        Parameters
        ----------
        param : SharedVariable
            One of the parameters.
        var : SharedVariable
            The algorithm's variable.
        taken : collection of SharedVariable, optional
            Variables already kept for this graph, which ``var`` must not
            be merged with.

        Returns
        -------
        SharedVariable
            ``var``, or the variable already kept under that name if it has
            the same type (a second graph built by the same algorithm then
            continues from the first one's state).
        """
        if any(v is var for v in self.variables.values()):
            return var
        index = self.index(param)
        prefix = f"{self._names[index]}_"
        suffix = var.name or "state"
        suffix = suffix[len(prefix):] if suffix.startswith(prefix) and suffix != prefix else suffix
        key, n = (index, suffix), 1
        while key in self.variables:
            kept = self.variables[key]
            if kept.type == var.type and all(kept is not t for t in taken):
                return kept
            key, n = (index, f"{suffix}{n}"), n + 1
        self.variables[key] = var
        value = np.asarray(var.get_value(borrow=True))
        if value.dtype != object and value.size and (value == value.flat[0]).all():
            self.initial[key] = value.flat[0].item()
        return var

    def name(self, key):
        """The name of a state variable in checkpoints: ``w_g2_ewma``, ``t``.

        Parameters
        ----------
        key : tuple
            ``(index, suffix)``.

        Returns
        -------
        str
        """
        index, suffix = key
        return suffix if index is None else f"{self._keys[index]}_{suffix}"

    def used(self, updates):
        """Names and variables of the state that ``updates`` update.

        Parameters
        ----------
        updates : list of (SharedVariable, expression)
            An update graph.

        Returns
        -------
        dict of str to SharedVariable
        """
        targets = {id(var) for var, _ in updates}
        return {self.name(key): var for key, var in self.variables.items()
                if id(var) in targets}

    def reset_unused(self, names):
        """Reset every variable not named in ``names`` to its initial value.

        Parameters
        ----------
        names : collection of str
            Names (see :meth:`name`) of the variables to keep.
        """
        for key, var in self.variables.items():
            if self.name(key) not in names and key in self.initial:
                var.set_value(np.full_like(var.get_value(borrow=True), self.initial[key]))
