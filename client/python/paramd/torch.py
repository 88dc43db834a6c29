"""paramd.torch.RemoteOptimizer: a torch.optim.Optimizer whose update runs
on a paramd server (or a sharded service).

    opt = RemoteOptimizer(model.named_parameters(), address="127.0.0.1:8471",
                          model="mlp", optimizer={"name": "AdamW", "lr": 1e-3})
    for x, y in batches:
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()          # pushes every .grad, writes the returned weights
        opt.zero_grad()

docs/PYTHON.md is the guide.
"""

import base64

import numpy as np
import torch

from . import errors
from .client import AUTO, Client, default_worker_name

__all__ = ["RemoteOptimizer"]

_WIRE_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _named_groups(params):
    """[(overrides, [(name, parameter)])] from named_parameters(), a list of
    (name, parameter) pairs, plain parameters (named "params.I"), or torch
    style param-group dicts whose "params" are any of those."""
    params = list(params)
    if not params:
        raise ValueError("RemoteOptimizer got an empty parameter list")
    groups = params if isinstance(params[0], dict) else [{"params": params}]
    result, index = [], 0
    for group in groups:
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("parameter groups must be dicts with \"params\"")
        named = []
        members = group["params"]
        members = [members] if isinstance(members, torch.Tensor) else list(members)
        for member in members:
            if isinstance(member, tuple) and len(member) == 2 and isinstance(member[0], str):
                name, parameter = member
            elif isinstance(member, torch.Tensor):
                name, parameter = "params.%d" % index, member
            else:
                raise TypeError("parameters must be (name, tensor) pairs, as named_parameters() "
                                "gives them, or tensors; got %r" % type(member).__name__)
            if not isinstance(parameter, torch.Tensor):
                raise TypeError("parameter %r is a %s, not a tensor" % (name, type(parameter).__name__))
            named.append((name, parameter))
            index += 1
        result.append(({k: v for k, v in group.items() if k != "params"}, named))
    return result


def _weights_tensor(values):
    array = np.asarray(values, dtype=np.float32)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


class RemoteOptimizer(torch.optim.Optimizer):
    """A torch.optim.Optimizer that pushes each parameter's gradient to
    paramd and writes the weights paramd returns into the parameter.

    params: model.named_parameters() (or (name, parameter) pairs, or torch
    style groups: [{"params": [(name, p), ...], "weight_decay": 0}, ...],
    whose hyperparameters become the model's "param_groups").  The tensor
    names on the server are the parameters' names.

    address ("host:port" of the binary protocol, "http://host:port" for HTTP
    only) or shard_map (a path, for a sharded service), or client (a
    paramd.Client to share); http="host:port" adds a single server's HTTP
    address, which state_dict() and patch() need; "https://host:port"
    addresses use TLS.  token (else $PARAMD_TOKEN) and tls_ca go to the
    paramd.Client it makes (see paramd.Client).  model: the model's name.
    optimizer, schedule, clip, consistency and any other training option
    (nonfinite, accumulate, grad_noise, ...): the dictionaries of the REST
    API (docs/API.md), used when the model is created.

    The model is created from the parameters' current values, unless it
    exists (another worker created it: with create=False it must): then the
    optimizer attaches to it, checks that it has a tensor of the same shape
    for every parameter, and copies the server's weights into the
    parameters.

    worker names this worker in every push (default host-pid); each push
    carries, per shard, the step of that shard's last reply as its version,
    so sync and ssp consistency modes place it and every mode measures
    staleness.  dtype: "float32", "float16" or "bfloat16" on the wire
    (default: the parameters' own 16-bit type, else float32).
    """

    # Optimizers whose step needs the closure several times register a
    # method here: name -> method (self, closure) -> loss.  LBFGS is one
    # (below); SAM's two phases would be another.
    _closure_steps = {"LBFGS": lambda self, closure: self._lbfgs_step(closure),
                      "SAM": lambda self, closure: self._sam_step(closure)}

    def __init__(self, params, *, address=None, shard_map=None, http=None, client=None,
                 model, optimizer, schedule=None, clip=None, consistency=None, worker=None,
                 dtype=None, create=True, timeout=120.0, transport=None, token=None, tls_ca=None,
                 **options):
        if not isinstance(optimizer, dict) or "name" not in optimizer:
            raise ValueError("optimizer must be a dict with a \"name\", as in the REST API: "
                             "{\"name\": \"AdamW\", \"lr\": 1e-3}")
        groups = _named_groups(params)
        defaults = {k: v for k, v in optimizer.items() if k != "name"}
        torch_groups = [dict(overrides, params=[p for _, p in named]) for overrides, named in groups]
        super().__init__(torch_groups, defaults)
        self._named = [pair for _, named in groups for pair in named]
        self._group_sets_lr = ["lr" in overrides for overrides, _ in groups]
        # Each group's index among the model's "param_groups" (the groups with
        # hyperparameters of their own), None for the optimizer's defaults.
        self._server_groups, count = [], 0
        for overrides, _ in groups:
            self._server_groups.append(count if overrides else None)
            count += bool(overrides)
        self._group_sizes = [len(named) for _, named in groups]
        self._by_name = dict(self._named)
        if len(self._by_name) != len(self._named):
            raise ValueError("two parameters have the same name")
        self.model = model
        self.optimizer_config = dict(optimizer)
        self.worker = worker or default_worker_name()
        self.dtype = dtype
        self.last_result = None
        self._own_client = client is None
        self.client = client if client is not None else Client(
            address, shard_map=shard_map, http=http, timeout=timeout, transport=transport,
            worker=self.worker, token=token, tls_ca=tls_ca)
        body = {"optimizer": self.optimizer_config, "tensors": [self._tensor_spec(n, p)
                                                                 for n, p in self._named]}
        param_groups = [dict(overrides, tensors=[n for n, _ in named])
                        for overrides, named in groups if overrides]
        if param_groups:
            body["param_groups"] = param_groups
        for key, value in (("schedule", schedule), ("clip", clip), ("consistency", consistency)):
            if value is not None:
                body[key] = value
        body.update(options)
        self.created = False
        try:
            if create:
                try:
                    self.client.create(model, body)
                    self.created = True
                except errors.ModelExists:
                    pass
            self._attach()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _tensor_spec(name, parameter):
        values = parameter.detach().to("cpu", torch.float32).contiguous().numpy()
        return {"name": name, "shape": list(parameter.shape),
                "values": {"dtype": "float32",
                           "b64": base64.b64encode(values.tobytes()).decode()}}

    def _attach(self):
        """Checks the server's model against the parameters; unless this
        optimizer created it, copies the server's weights into them."""
        placement = self.client.placement(self.model)
        for name, parameter in self._named:
            held = placement.get(name)
            if held is None:
                raise ValueError("model %r on the server has no tensor %r (it has %s)"
                                 % (self.model, name, ", ".join(sorted(placement)) or "none"))
            if tuple(held.shape) != tuple(parameter.shape):
                raise ValueError("tensor %r of model %r has shape %s on the server, the "
                                 "parameter has %s" % (name, self.model, list(held.shape),
                                                       list(parameter.shape)))
        description = self.client.describe(self.model)
        self.description = description
        remote = description.get("optimizer", {}).get("name", "")
        if remote.lower() != self.optimizer_config["name"].lower():
            raise ValueError("model %r runs %s on the server, not %s"
                             % (self.model, remote, self.optimizer_config["name"]))
        if not self.created:
            self.pull()

    # -- training -------------------------------------------------------------

    def _gradients(self):
        grads, wire = {}, {}
        for name, parameter in self._named:
            grad = parameter.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError("RemoteOptimizer does not take sparse gradients (%s)" % name)
            grad = grad.detach()
            if grad.device.type != "cpu":
                grad = grad.cpu()
            dtype = self.dtype or _WIRE_DTYPES.get(grad.dtype, "float32")
            if grad.dtype == torch.bfloat16:
                array = grad.contiguous().view(torch.int16).numpy().view(np.uint16)
                if dtype != "bfloat16":
                    array = grad.float().numpy()
            elif grad.dtype in (torch.float32, torch.float16):
                array = grad.contiguous().numpy()
            else:
                array = grad.to(torch.float32).numpy()
            grads[name], wire[name] = array, dtype
        return grads, wire

    def _write(self, weights):
        with torch.no_grad():
            for name, values in weights.items():
                parameter = self._by_name[name]
                parameter.copy_(_weights_tensor(values).view(parameter.shape))

    def push(self, loss=None, grad_norm=None):
        """Pushes the parameters' gradients (those that have one) and writes
        the weights the server returns; returns the PushResult, or None when
        no parameter has a gradient."""
        grads, wire = self._gradients()
        if not grads:
            return None
        result = self.client.pushpull(self.model, grads, loss=None if loss is None else float(loss),
                                      grad_norm=grad_norm, worker=self.worker, version=AUTO,
                                      dtype=wire)
        self._write(result.weights)
        self.last_result = result
        for group, sets_lr in zip(self.param_groups, self._group_sets_lr):
            if not sets_lr:     # informative: the lr the server used
                group["lr"] = result.lr
        return result

    @torch.no_grad()
    def step(self, closure=None, loss=None):
        """One optimizer step on the server: evaluates `closure` (with
        gradients enabled) if given, pushes every gradient with its loss
        (which ReduceLROnPlateau schedules use; `loss` gives one without a
        closure), and writes the new weights into the parameters.  Returns
        the closure's loss, as torch optimizers do."""
        special = self._closure_steps.get(self.optimizer_config["name"])
        if special is not None:
            return special(self, closure)
        result = None
        if closure is not None:
            with torch.enable_grad():
                result = closure()
        self.push(loss if loss is not None else result)
        return result

    def _lbfgs_step(self, closure):
        """torch.optim.LBFGS.step(closure) with the server running the
        algorithm: every closure call's loss and gradients go to the server,
        which answers with the next point to evaluate (written into the
        parameters) until the step is done; the parameters then hold the
        step's result.  Returns the first closure call's loss, as torch."""
        if closure is None:
            raise RuntimeError("LBFGS needs a closure that reevaluates the model and returns "
                               "the loss, as torch.optim.LBFGS.step does")
        first = None
        while True:
            with torch.enable_grad():
                loss = closure()
            if first is None:
                first = loss
            for _, parameter in self._named:
                if parameter.grad is None:  # LBFGS takes every gradient, as torch's zeros
                    parameter.grad = torch.zeros_like(parameter)
            result = self.push(loss)
            if not result.evaluate:
                return first

    def _sam_step(self, closure):
        """SAM's step as the reference implementation's (first_step, closure,
        second_step), with the server holding the weights: the gradients at
        the weights go up (the ascent push) and the server answers the
        perturbed weights, written into the parameters; the closure is
        evaluated there and its gradients go up (the descent push), and the
        server answers the stepped weights.  The "momentum" variant is one
        ordinary push per step (the reply is already perturbed).  Returns the
        first closure call's loss."""
        variant = self.optimizer_config.get("variant", "two_step")
        if variant == "momentum":
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            self.push(loss)
            return loss
        if closure is None:
            raise RuntimeError("SAM needs a closure that reevaluates the model and returns the "
                               "loss: the step takes the gradient twice")
        with torch.enable_grad():
            loss = closure()
        norm = None
        if self.client.shard_count > 1:
            # No shard sees the whole gradient: the norm goes with the push.
            adaptive = bool(self.optimizer_config.get("adaptive", False))
            squares = 0.0
            for _, p in self._named:
                if p.grad is not None:
                    g = p.grad.detach().double()
                    if adaptive:
                        g = g * p.detach().double().abs()
                    squares += float((g * g).sum())
            norm = squares ** 0.5
        result = self.push(loss, grad_norm=norm)
        if result is None or not result.evaluate:
            return loss
        self.zero_grad()
        with torch.enable_grad():
            closure()
        self.push()
        return loss

    def pull(self):
        """Copies the server's current weights into the parameters."""
        weights = self.client.pull(self.model, [n for n, _ in self._named])
        self._write(weights)
        return weights.step

    @property
    def lr(self):
        """The learning rate the last step used (the server's schedule's)."""
        return None if self.last_result is None else self.last_result.lr

    # -- state ------------------------------------------------------------------

    def state_dict(self):
        """The server-side optimizer state in torch's layout: {"state": {index:
        {"step": tensor, slot: tensor, ...}}, "param_groups": [{"params":
        [indices], hyperparameters...}]}, with the parameters numbered in
        this optimizer's order and its groups in its order, plus "paramd":
        {"model", "step", "optimizer"}.  Reads
        each slot with GET /v1/models/{model}/state (HTTP), so the client
        needs an HTTP address."""
        description = self.client.describe(self.model)
        tensors = {t["name"]: t for t in description["tensors"]}
        slots = {}
        for name, _ in self._named:
            for slot in tensors[name].get("state", []):
                slots.setdefault(slot, []).append(name)
        arrays = {slot: self.client.state(self.model, slot, names) for slot, names in slots.items()}
        state = {}
        for index, (name, parameter) in enumerate(self._named):
            entry = {"step": torch.tensor(float(tensors[name].get("step", 0)))}
            for slot in tensors[name].get("state", []):
                entry[slot] = _state_tensor(arrays[slot][name], list(parameter.shape), slot)
            state[index] = entry
        server_groups = description.get("param_groups", [])
        defaults = {k: v for k, v in description.get("optimizer", {}).items() if k != "name"}
        torch_groups, index = [], 0
        for server_index, size in zip(self._server_groups, self._group_sizes):
            hyper = defaults if server_index is None else {
                k: v for k, v in server_groups[server_index].items() if k != "tensors"}
            torch_groups.append(dict(hyper, params=list(range(index, index + size))))
            index += size
        return {"state": state, "param_groups": torch_groups,
                "paramd": {"model": self.model, "step": description.get("step", 0),
                           "optimizer": description.get("optimizer", {}).get("name")}}

    def load_state_dict(self, state_dict):
        raise NotImplementedError("paramd has no API to write optimizer state (a model's state "
                                  "starts empty, or comes from a checkpoint of the server); "
                                  "state_dict() is for reading it")

    def patch(self, body):
        """PATCH the model (docs/API.md, "Change a model"): hyperparameters,
        schedule, clip... at run time, on every shard.  Needs HTTP."""
        return self.client.patch(self.model, body)

    def close(self):
        if self._own_client:
            self.client.close()


def _state_tensor(values, shape, slot):
    values = np.asarray(values, dtype=np.float32)
    count = int(np.prod(shape)) if shape else 1
    if values.size == count:
        target = shape
    elif slot == "row_var" and len(shape) >= 2:
        target = shape[:-1] + [1]
    elif slot == "col_var" and len(shape) >= 2:
        target = shape[:-2] + [1, shape[-1]]
    else:
        target = [values.size]
    return _weights_tensor(values.reshape(target) if int(np.prod(target)) == values.size
                           else values)

