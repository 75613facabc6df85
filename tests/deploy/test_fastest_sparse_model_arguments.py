"""Bad arguments to incop.fastest_sparse_model (incop.deploy.arguments) are one UsageError line,
raised before anything is timed: a shape the model cannot take (naming the shape given, the
layer that refused it, torch's reason and, where one close to it runs, a shape that does), a
size below 1, a batch below 1, masks of another model, a model off the CPU. A correct call
still works."""
import re

import pytest
import torch
from torch import nn

import incop
from incop.deploy import sparse_inference
from incop.models.architectures import build_model


def lenet300():
    torch.manual_seed(0)
    return build_model("lenet300", (1, 28, 28), 10)


def flat_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100),
                         nn.ReLU(), nn.Linear(100, 10))


def lenet5():
    torch.manual_seed(0)
    return build_model("lenet5", (1, 28, 28), 10)  # one input channel


@pytest.fixture
def nothing_timed(monkeypatch):
    """Timing fails the test: every refusal comes before it."""
    def measure(*args, **kwargs):
        raise AssertionError("measure ran on arguments that should have been refused")
    monkeypatch.setattr(sparse_inference, "measure", measure)


def refusal(model, masks, input_shape, batch=64) -> str:
    with pytest.raises(incop.UsageError) as e:
        incop.fastest_sparse_model(model, masks, input_shape, batch=batch, repeats=1, warmup=0)
    text = str(e.value)
    assert "\n" not in text and text.startswith("fastest_sparse_model: "), text
    assert len(text) < 600, text
    return text


def example_shape(text: str):
    m = re.search(r"e\.g\. (\([0-9, ]*\))$", text)
    return None if m is None else tuple(int(d) for d in m.group(1).strip("()").split(",") if d.strip())


@pytest.mark.parametrize("make, shape, batch, says, example", [
    (lenet300, (1, 28, 27), 64, ["(64, 1, 28, 27)", "input_shape (1, 28, 27) at batch 64",
                                  "layer fc1 (Linear", "mat1 and mat2 shapes cannot be multiplied"],
     (1, 28, 28)),
    (flat_mlp, (1, 28, 27), 64, ["(64, 1, 28, 27)", "input_shape (1, 28, 27)", "64x756"],
     (1, 28, 28)),
    (flat_mlp, (3, 32, 32), 8, ["(8, 3, 32, 32)", "input_shape (3, 32, 32) at batch 8"],
     (1, 28, 28)),
    (lenet5, (3, 28, 28), 64, ["(64, 3, 28, 28)", "layer features.0 (Conv2d", "channels"],
     (1, 28, 28)),
    (lenet5, (28, 28, 1), 4, ["(4, 28, 28, 1)", "input_shape (28, 28, 1)"], (1, 28, 28)),
    (lenet5, (28, 28), 4, ["(4, 28, 28)", "input_shape (28, 28)"], (1, 28, 28)),
    # refused by a later layer: no shape close to it runs, so none is offered
    (lenet5, (3, 32, 32), 64, ["(64, 3, 32, 32)", "input_shape (3, 32, 32)", "channels"], None),
    (lenet5, (1, 32, 32), 64, ["(64, 1, 32, 32)", "layer fc1 (Linear"], None),
])
def test_a_shape_the_model_cannot_take_is_one_line_naming_it(make, shape, batch, says, example,
                                                            nothing_timed):
    model = make()
    text = refusal(model, incop.Masks.ones_like(model), shape, batch)
    assert "the model cannot take inputs of shape" in text
    assert "give the shape of one input without the batch dimension" in text
    for part in says:
        assert part in text, (part, text)
    assert "Traceback" not in text and "File " not in text
    assert example_shape(text) == example, text
    if example is not None:  # the shape offered does run
        with torch.no_grad():
            model(torch.zeros(2, *example))


@pytest.mark.parametrize("shape, says", [
    ((1, 0, 28), "input_shape (1, 0, 28) has a dimension of 0"),
    ((1, 28, -1), "input_shape (1, 28, -1) has a dimension of -1"),
    ((0,), "input_shape (0,) has a dimension of 0"),
    ((1, 28, 2.5), "input_shape (1, 28, 2.5)"),
    (784, "input_shape 784 is not a shape"),
    ("1,28,28", "input_shape '1,28,28' is not a shape"),
])
def test_a_shape_with_a_size_below_one_or_not_a_shape_is_refused(shape, says, nothing_timed):
    model = lenet300()
    text = refusal(model, incop.Masks.ones_like(model), shape)
    assert says in text and "e.g. (" in text, text


@pytest.mark.parametrize("batch", [0, -3, 2.0])
def test_a_batch_below_one_is_refused_naming_the_shape(batch, nothing_timed):
    model = lenet300()
    text = refusal(model, incop.Masks.ones_like(model), (1, 28, 28), batch)
    assert f"batch {batch!r}" in text and "input_shape (1, 28, 28)" in text
    assert "at least 1" in text, text


def test_inputs_too_large_for_the_memory_are_refused(monkeypatch, nothing_timed):
    from incop.deploy import arguments

    monkeypatch.setattr(arguments, "physical_memory", lambda: 1 << 30)
    model = lenet300()
    text = refusal(model, incop.Masks.ones_like(model), (1, 4000, 4000), 64)
    assert "(64, 1, 4000, 4000)" in text and "GiB" in text and "memory" in text, text


def test_masks_of_another_model_are_one_line(nothing_timed):
    model = lenet300()
    masks = dict(incop.Masks.ones_like(model))
    text = refusal(model, {**masks, "fc9.weight": torch.ones(10, 100)}, (1, 28, 28))
    assert "masks name 'fc9.weight' (a (10, 100) mask)" in text
    assert "LeNet300 does not have" in text and "fc1.weight" in text, text
    text = refusal(model, {**masks, "fc1.weight": torch.ones(784, 300)}, (1, 28, 28))
    assert "the mask of fc1.weight has shape (784, 300) but the weight has shape (300, 784)" in text
    # a mask that would broadcast silently is refused too
    text = refusal(model, {**masks, "fc1.weight": torch.ones(784)}, (1, 28, 28))
    assert "has shape (784,)" in text, text
    text = refusal(model, {"fc1.weight": [[1.0]]}, (1, 28, 28))
    assert "fc1.weight is a list" in text and "(300, 784)" in text, text
    text = refusal(model, [torch.ones(300, 784)], (1, 28, 28))
    assert "masks is a list" in text, text


def test_a_model_off_the_cpu_is_refused(nothing_timed):
    model = nn.Sequential(nn.Linear(4, 2, device="meta"))
    text = refusal(model, {}, (4,))
    assert "on meta" in text and ".cpu()" in text, text


def test_a_correct_call_still_works_and_leaves_the_model_as_it_was():
    model = flat_mlp()
    g = torch.Generator().manual_seed(1)
    masks = {n: (torch.rand(p.shape, generator=g) < 0.1).float()
             for n, p in model.named_parameters() if p.dim() > 1}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    fast, m = incop.fastest_sparse_model(model, incop.Masks(masks), [1, 28, 28], batch=8,
                                         repeats=1, warmup=0)
    assert m["batch"] == 8 and m["max_abs_diff"] < 1e-5
    masked = flat_mlp()
    incop.Masks(masks).apply(masked)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fast(x), masked(x), atol=1e-5)
    # the caller's model is untouched, and the shape check left no hook behind on either
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    for net in (model, fast):
        assert sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks)
                   for mod in net.modules()) == hooks == 0
