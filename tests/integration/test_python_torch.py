#!/usr/bin/python3
"""paramd.torch.RemoteOptimizer against real servers (Debian's python3-torch):
the equivalence test (torch.optim.AdamW in one process and paramd's AdamW
through RemoteOptimizer give bit-identical weights and state after 50
steps, on one server and on two shards with split tensors), parameter
groups, attaching to an existing model, closures and ReduceLROnPlateau,
16-bit gradients, and two synchronous workers that equal torch on their
averaged gradient.
"""

import os
import sys
import unittest

import numpy as np
import torch

from cluster import Cluster
from common import run_concurrently
from harness import Server

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "client", "python"))
import paramd  # noqa: E402
from paramd import dtypes  # noqa: E402
from paramd.torch import RemoteOptimizer  # noqa: E402

torch.set_num_threads(1)
TIMEOUT = 60.0


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))


def data(seed=1, n=48):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=generator), torch.randint(0, 4, (n,), generator=generator)


def train(model, optimizer, steps, x, y, batch=16):
    losses = []
    for step in range(steps):
        start = (step * batch) % len(x)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[start:start + batch]), y[start:start + batch])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


class RemoteOptimizerTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.address = "127.0.0.1:%d" % cls.server.tcp_port
        cls.http = "127.0.0.1:%d" % cls.server.port

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        if status != 0:
            raise AssertionError("paramd exited with %r" % status)

    def name(self, suffix=""):
        return (self.id().split(".")[-1] + suffix)[:128]

    def remote(self, model, name, optimizer, **kwargs):
        kwargs.setdefault("address", self.address)
        kwargs.setdefault("http", self.http)
        opt = RemoteOptimizer(model.named_parameters(), model=name, optimizer=optimizer,
                              timeout=TIMEOUT, **kwargs)
        self.addCleanup(opt.close)
        return opt

    def assert_same_parameters(self, a, b, what=""):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            self.assertTrue(torch.equal(p, q), "%s %s differs (max %g)"
                            % (what, name, (p - q).abs().max().item()))

    def assert_same_state(self, reference, remote):
        """torch's optimizer.state_dict() and paramd's, bit for bit."""
        expected, got = reference.state_dict(), remote.state_dict()
        self.assertEqual(sorted(expected["state"]), sorted(got["state"]))
        for index, entry in expected["state"].items():
            self.assertEqual(sorted(entry), sorted(got["state"][index]))
            for key, value in entry.items():
                self.assertTrue(torch.equal(value, got["state"][index][key]),
                                "state[%d][%s] differs" % (index, key))
        self.assertEqual([g["params"] for g in expected["param_groups"]],
                         [g["params"] for g in got["param_groups"]])
        for mine, theirs in zip(expected["param_groups"], got["param_groups"]):
            for key in ("lr", "eps", "weight_decay", "amsgrad"):
                self.assertEqual(mine[key], theirs[key], key)

    # -- the equivalence test ---------------------------------------------------------

    def test_adamw_equals_torch_bit_for_bit(self):
        """The same model and data trained with torch.optim.AdamW in this
        process and through paramd with one worker: identical weights after
        every one of 50 steps, and identical optimizer state at the end."""
        x, y = data()
        reference, remote = make_model(), make_model()
        torch_opt = torch.optim.AdamW(reference.parameters(), lr=3e-3, weight_decay=0.05)
        paramd_opt = self.remote(remote, self.name(), {"name": "AdamW", "lr": 3e-3,
                                                       "weight_decay": 0.05})
        self.assertTrue(paramd_opt.created)
        losses = []
        for step in range(50):
            a = train(reference, torch_opt, 1, x[step % 3 * 16:], y[step % 3 * 16:])
            b = train(remote, paramd_opt, 1, x[step % 3 * 16:], y[step % 3 * 16:])
            self.assertEqual(a, b, "loss at step %d" % step)
            self.assert_same_parameters(reference, remote, "step %d:" % step)
            losses += b
        self.assertEqual(paramd_opt.last_result.step, 50)
        self.assert_same_state(torch_opt, paramd_opt)
        self.assertLess(losses[-1], losses[0] * 0.8)     # it did train

    def test_adamw_on_two_shards_equals_torch(self):
        """The same through two shards that split the first layer's weight."""
        x, y = data()
        with Cluster(2, split_threshold=100) as cluster:
            reference, remote = make_model(), make_model()
            torch_opt = torch.optim.AdamW(reference.parameters(), lr=1e-2)
            paramd_opt = RemoteOptimizer(remote.named_parameters(), shard_map=cluster.map_path,
                                         model="m", optimizer={"name": "AdamW", "lr": 1e-2},
                                         timeout=TIMEOUT)
            placement = paramd_opt.client.placement("m")
            self.assertEqual(len(placement["0.weight"].pieces), 2)   # 192 > 100 elements
            self.assertEqual(len(placement["0.bias"].pieces), 1)
            train(reference, torch_opt, 50, x, y)
            train(remote, paramd_opt, 50, x, y)
            self.assert_same_parameters(reference, remote)
            self.assert_same_state(torch_opt, paramd_opt)
            paramd_opt.close()

    def test_parameter_groups_equal_torchs(self):
        x, y = data(2)
        reference, remote = make_model(), make_model()

        def groups(model, named):
            decay = [(n, p) for n, p in model.named_parameters() if n.endswith("weight")]
            plain = [(n, p) for n, p in model.named_parameters() if n.endswith("bias")]
            if not named:
                decay, plain = [p for _, p in decay], [p for _, p in plain]
            return [{"params": plain, "weight_decay": 0.0, "lr": 0.05}, {"params": decay}]

        torch_opt = torch.optim.Adam(groups(reference, False), lr=0.01, weight_decay=0.1,
                                     amsgrad=True)
        paramd_opt = RemoteOptimizer(groups(remote, True), address=self.address, http=self.http,
                                     model=self.name(), timeout=TIMEOUT,
                                     optimizer={"name": "Adam", "lr": 0.01, "weight_decay": 0.1,
                                                "amsgrad": True})
        self.addCleanup(paramd_opt.close)
        description = paramd_opt.client.describe(self.name())
        self.assertEqual(description["param_groups"][0]["tensors"], ["0.bias", "2.bias"])
        train(reference, torch_opt, 20, x, y)
        train(remote, paramd_opt, 20, x, y)
        # torch numbers parameters by group: biases, then weights.
        expected = [p for g in torch_opt.param_groups for p in g["params"]]
        got = [p for g in paramd_opt.param_groups for p in g["params"]]
        for p, q in zip(expected, got):
            self.assertTrue(torch.equal(p, q))
        self.assert_same_state(torch_opt, paramd_opt)

    # -- attaching ----------------------------------------------------------------------

    def test_second_worker_attaches_and_gets_the_servers_weights(self):
        name = self.name()
        first, second = make_model(0), make_model(1)
        self.remote(first, name, {"name": "SGD", "lr": 0.1})
        self.assertFalse(all(torch.equal(p, q) for p, q in zip(first.parameters(),
                                                                second.parameters())))
        attached = self.remote(second, name, {"name": "SGD", "lr": 0.1})
        self.assertFalse(attached.created)
        self.assert_same_parameters(first, second)
        # Both train the one model: the second sees the first's step.
        x, y = data()
        train(second, attached, 1, x, y)
        self.assertEqual(attached.last_result.step, 1)

    def test_attaching_to_a_different_model_is_refused(self):
        name = self.name()
        self.remote(make_model(), name, {"name": "SGD", "lr": 0.1})
        wider = torch.nn.Sequential(torch.nn.Linear(12, 17), torch.nn.Tanh(), torch.nn.Linear(17, 4))
        with self.assertRaisesRegex(ValueError, r"tensor '0.weight' .* shape \[16, 12\]"):
            self.remote(wider, name, {"name": "SGD", "lr": 0.1})
        with self.assertRaisesRegex(ValueError, "runs SGD on the server, not Adam"):
            self.remote(make_model(), name, {"name": "Adam"})
        with self.assertRaises(paramd.ModelNotFound):
            self.remote(make_model(), self.name("_missing"), {"name": "SGD", "lr": 0.1},
                        create=False)

    # -- closures, schedules, wire types ------------------------------------------------

    def test_closure_loss_drives_reduce_lr_on_plateau(self):
        """step(closure) evaluates the closure, returns its loss and sends it:
        the server's ReduceLROnPlateau matches torch's on the same losses."""
        x, y = data(3)
        reference, remote = make_model(), make_model()
        torch_opt = torch.optim.SGD(reference.parameters(), lr=0.5)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_opt, factor=0.5, patience=1)
        paramd_opt = self.remote(remote, self.name(), {"name": "SGD", "lr": 0.5},
                                 schedule={"name": "ReduceLROnPlateau", "factor": 0.5,
                                           "patience": 1})
        torch_lrs, paramd_lrs = [], []
        for step in range(12):
            def closure(model=remote, opt=paramd_opt):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y) + (0 if step < 4 else 10)
                loss.backward()
                return loss
            torch_opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(reference(x), y) + (0 if step < 4 else 10)
            loss.backward()
            torch_lrs.append(torch_opt.param_groups[0]["lr"])
            torch_opt.step()
            scheduler.step(loss.item())
            returned = paramd_opt.step(closure)
            self.assertEqual(returned.item(), loss.item())
            paramd_lrs.append(paramd_opt.lr)
        self.assertEqual(paramd_lrs, torch_lrs)
        self.assertLess(min(paramd_lrs), 0.5)
        self.assertEqual(paramd_opt.param_groups[0]["lr"], paramd_lrs[-1])
        self.assert_same_parameters(reference, remote)

    def test_float16_gradients_on_the_wire(self):
        name = self.name()
        model = make_model()
        opt = self.remote(model, name, {"name": "SGD", "lr": 0.1}, dtype="float16")
        x, y = data()
        train(model, opt, 3, x, y)
        exact = opt.client.pull(name)
        for tensor, parameter in model.named_parameters():
            rounded = exact[tensor].astype(np.float16).astype(np.float32)
            self.assertTrue(np.array_equal(parameter.detach().numpy(), rounded), tensor)

    def test_bfloat16_conversion_matches_torch(self):
        values = torch.cat([torch.randn(10000) * 100, torch.tensor(
            [1.00390625, 1.01171875, -2.5, 3.4e38, float("inf"), float("-inf"), 1e-40, 0.0])])
        mine = dtypes.float32_to_bfloat16_bits(values.numpy())
        theirs = values.bfloat16().view(torch.int16).numpy().view(np.uint16)
        self.assertTrue(np.array_equal(mine, theirs))
        self.assertTrue(torch.equal(torch.from_numpy(dtypes.bfloat16_bits_to_float32(mine)),
                                    values.bfloat16().float()))

    def test_bfloat16_parameters(self):
        name = self.name()
        model = make_model().to(torch.bfloat16)
        opt = self.remote(model, name, {"name": "SGD", "lr": 0.1})
        x, y = data()
        train(model, opt, 2, x.to(torch.bfloat16), y)
        exact = opt.client.pull(name)
        for tensor, parameter in model.named_parameters():
            self.assertTrue(torch.equal(parameter, torch.from_numpy(exact[tensor]).bfloat16()))

    def test_sync_workers_equal_torch_on_the_averaged_gradient(self):
        """Two RemoteOptimizers in sync mode: every step averages their
        gradients (float32, in worker-name order) and applies AdamW once,
        which equals torch.optim.AdamW stepped on (g0 + g1) / 2."""
        x, y = data(4, 64)
        name = self.name()
        models = [make_model(), make_model()]
        optimizers = [None, None]

        def create(i):
            optimizers[i] = RemoteOptimizer(
                models[i].named_parameters(), address=self.address, model=name,
                optimizer={"name": "AdamW", "lr": 1e-2}, worker="w%d" % i, timeout=TIMEOUT,
                consistency={"mode": "sync", "workers": 2, "timeout": 60})
        for i in range(2):
            create(i)
        self.addCleanup(lambda: [o.close() for o in optimizers])
        reference = make_model()
        torch_opt = torch.optim.AdamW(reference.parameters(), lr=1e-2)
        def run(i):
            for step in range(10):
                part = slice(32 * i + (step % 2) * 16, 32 * i + (step % 2) * 16 + 16)
                train(models[i], optimizers[i], 1, x[part], y[part])
        self.assertEqual(run_concurrently([lambda: run(0), lambda: run(1)]), [])
        for step in range(10):
            grads = []
            for i in range(2):
                part = slice(32 * i + (step % 2) * 16, 32 * i + (step % 2) * 16 + 16)
                reference.zero_grad()
                torch.nn.functional.cross_entropy(reference(x[part]), y[part]).backward()
                grads.append([p.grad.clone() for p in reference.parameters()])
            for p, g0, g1 in zip(reference.parameters(), *grads):
                p.grad = (g0 + g1) / 2
            torch_opt.step()
        self.assert_same_parameters(reference, models[0])
        self.assert_same_parameters(reference, models[1])
        self.assertEqual(optimizers[0].last_result.step, 10)

    def test_lbfgs_closure_steps_follow_torch(self):
        """torch.optim.LBFGS and paramd's server-side LBFGS, both driven by
        the same closure (a least-squares fit of a linear layer): the same
        closure calls per step and the same weights (to 1e-4: torch dots
        its parameters as one vector, paramd tensor by tensor)."""
        generator = torch.Generator().manual_seed(7)
        x, w_true = torch.randn(32, 5, generator=generator), torch.randn(3, 5, generator=generator)
        y = x @ w_true.t() + 0.05 * torch.randn(32, 3, generator=generator)
        for line_search in (None, "strong_wolfe"):
            keywords = {"lr": 0.5, "history_size": 4, "max_iter": 4}
            if line_search:
                keywords["line_search_fn"] = line_search
            torch.manual_seed(3)
            local = torch.nn.Linear(5, 3)
            torch.manual_seed(3)
            remote_model = torch.nn.Linear(5, 3)
            reference = torch.optim.LBFGS(local.parameters(), **keywords)
            remote = self.remote(remote_model, self.name("_" + str(line_search)),
                                 dict(keywords, name="LBFGS"))
            calls = {"local": 0, "remote": 0}

            def closure_for(model, optimizer, key):
                def closure():
                    calls[key] += 1
                    optimizer.zero_grad()
                    loss = ((model(x) - y) ** 2).mean()
                    loss.backward()
                    return loss
                return closure

            for step in range(3):
                before = dict(calls)
                first_local = reference.step(closure_for(local, reference, "local"))
                first_remote = remote.step(closure_for(remote_model, remote, "remote"))
                self.assertEqual(calls["local"] - before["local"],
                                 calls["remote"] - before["remote"],
                                 "%s step %d: closure calls differ" % (line_search, step))
                self.assertAlmostEqual(float(first_local), float(first_remote), places=5)
                for p, q in zip(local.parameters(), remote_model.parameters()):
                    self.assertTrue(torch.allclose(p, q, rtol=1e-4, atol=1e-5),
                                    "%s step %d: %s vs %s" % (line_search, step, p, q))
            self.assertLess(float(((remote_model(x) - y) ** 2).mean()), 0.01)

    def test_sam_closure_steps_follow_the_reference(self):
        """RemoteOptimizer with SAM around SGD-with-momentum against the
        reference implementation's two-step procedure (davda54/sam) run
        locally on torch.optim.SGD: the same closure calls (two per step) and
        the same weights (to float32 noise: the perturbation's norm is summed
        in another order)."""
        generator = torch.Generator().manual_seed(11)
        x, y = torch.randn(24, 6, generator=generator), torch.randn(24, 2, generator=generator)
        for adaptive in (False, True):
            torch.manual_seed(5)
            local = torch.nn.Linear(6, 2)
            torch.manual_seed(5)
            remote_model = torch.nn.Linear(6, 2)
            base = torch.optim.SGD(local.parameters(), lr=0.1, momentum=0.9)
            remote = self.remote(remote_model, self.name("_%s" % adaptive),
                                 {"name": "SAM", "rho": 0.05, "adaptive": adaptive,
                                  "base": {"name": "SGD", "lr": 0.1, "momentum": 0.9}})
            calls = {"local": 0, "remote": 0}

            def closure_for(model, zero, key):
                def closure():
                    calls[key] += 1
                    zero()
                    loss = ((model(x) - y) ** 2).mean()
                    loss.backward()
                    return loss
                return closure

            params = list(local.parameters())
            for step in range(5):
                # The reference: first_step, closure, second_step.
                closure = closure_for(local, base.zero_grad, "local")
                closure()
                with torch.no_grad():
                    norm = torch.norm(torch.stack([((p.abs() if adaptive else 1.0) * p.grad)
                                                   .norm(p=2) for p in params]), p=2)
                    scale = 0.05 / (norm + 1e-12)
                    old = [p.data.clone() for p in params]
                    for p in params:
                        p.add_((torch.pow(p, 2) if adaptive else 1.0) * p.grad * scale)
                closure()
                with torch.no_grad():
                    for p, o in zip(params, old):
                        p.data = o
                base.step()
                remote.step(closure_for(remote_model, remote.zero_grad, "remote"))
                self.assertEqual(calls["local"], calls["remote"])
                for p, q in zip(local.parameters(), remote_model.parameters()):
                    self.assertTrue(torch.allclose(p, q, rtol=1e-5, atol=1e-6),
                                    "adaptive=%s step %d: %s vs %s" % (adaptive, step, p, q))
            self.assertEqual(calls["remote"], 10)


if __name__ == "__main__":
    unittest.main()
