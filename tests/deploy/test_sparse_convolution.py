"""incop's direct sparse convolution (incop.deploy.sparse_conv) against
torch.nn.functional.conv2d with the masked weight: tile edges, strides, padding, kernel sizes,
dilation, groups, an all-zero output channel, an empty input channel, batch 1; integer-valued
data exactly, and 1 and 2 threads to the bit; incop speed times its rounds."""
import pytest
import torch
import torch.nn.functional as F

from conftest import run_dir, small_run

from incop.deploy.csr_tiled import unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"no kernel: {unavailable()}")

from incop.deploy.sparse_conv import TiledConv  # noqa: E402


def _case(n, c, k, kernel, h, w, groups=1, density=0.3, dtype=torch.float32, integers=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (k, c // groups, kernel, kernel)
    if integers:  # small integers: every sum is exact in float32, so results must be equal
        weight = torch.randint(-3, 4, shape, generator=g).to(dtype)
        x = torch.randint(-4, 5, (n, c, h, w), generator=g).to(dtype)
        bias = torch.randint(-2, 3, (k,), generator=g).to(dtype)
    else:
        weight, x = torch.randn(shape, generator=g, dtype=dtype), torch.randn((n, c, h, w), generator=g, dtype=dtype)
        bias = torch.randn(k, generator=g, dtype=dtype)
    weight[torch.rand(shape, generator=g) > density] = 0
    return x, weight, bias


@pytest.mark.parametrize("width", [1, 7, 8, 9, 63, 64, 65])
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (1, 0), (1, 2)])
def test_tile_edges_strides_and_padding_exactly(width, stride, padding):
    w_in = stride * (width - 1) + 3 - 2 * padding  # the input width that gives ``width`` out
    if w_in < 1:
        pytest.skip("no input of this width with this padding")
    x, w, b = _case(2, 5, 6, 3, 5, w_in)
    conv = TiledConv(w, b, stride, padding)
    want = F.conv2d(x, w, b, stride, padding)
    assert want.shape[-1] == width and torch.equal(conv(x), want)


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
@pytest.mark.parametrize("dilation", [1, 2])
def test_kernel_sizes_and_dilation_exactly(kernel, dilation):
    x, w, b = _case(1, 3, 4, kernel, 17, 19)
    for padding in (0, kernel // 2):
        conv = TiledConv(w, b, 1, padding, dilation)
        assert torch.equal(conv(x), F.conv2d(x, w, b, 1, padding, dilation))


@pytest.mark.parametrize("groups", [1, 2, 8])  # 8 of 8 input channels: depthwise
def test_groups_and_depthwise_exactly(groups):
    x, w, b = _case(3, 8, 8 if groups == 8 else 6, 3, 10, 11, groups=groups, density=0.5)
    conv = TiledConv(w, b, 1, 1, 1, groups)
    assert torch.equal(conv(x), F.conv2d(x, w, b, 1, 1, 1, groups))


def test_an_empty_output_channel_an_empty_input_channel_and_no_bias():
    x, w, b = _case(1, 4, 5, 3, 9, 9)
    w[2] = 0  # output channel 2 keeps nothing: its bias alone
    w[:, 1] = 0  # input channel 1 feeds nothing
    conv = TiledConv(w, b, 1, 1)
    out = conv(x)
    assert torch.equal(out, F.conv2d(x, w, b, 1, 1))
    assert torch.equal(out[0, 2], torch.full((9, 9), float(b[2])))
    assert torch.equal(TiledConv(w, None, 1, 1)(x), F.conv2d(x, w, None, 1, 1))
    assert torch.equal(TiledConv(torch.zeros_like(w), b, 1, 1)(x), F.conv2d(x, torch.zeros_like(w), b, 1, 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_real_valued_data_match_closely(dtype):
    x, w, b = _case(2, 16, 32, 3, 14, 14, integers=False, dtype=dtype)
    got, want = TiledConv(w, b, 1, 1)(x), F.conv2d(x, w, b, 1, 1)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(got, want, atol=tol, rtol=tol)


@pytest.mark.parametrize("images", [8, 16, 64])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 65])  # whole groups, and a last group part padding
@pytest.mark.parametrize("stride", [1, 2, (2, 1)])  # one run a plane, a row, a position
def test_interleaved_layouts_exactly(images, n, stride):
    x, w, b = _case(n, 6, 5, 3, 7, 9, density=0.4)
    w[3] = 0
    for padding, dilation in ((0, 1), (1, 1), (2, 2)):
        conv = TiledConv(w, b, stride, padding, dilation, images=images)
        assert torch.equal(conv(x), F.conv2d(x, w, b, stride, padding, dilation)), (padding, dilation)


@pytest.mark.parametrize("images", [1, 16])
def test_interleaved_depthwise_and_float64_closely(images):
    x, w, b = _case(20, 8, 8, 5, 6, 6, groups=8, density=0.6, integers=False, dtype=torch.float64)
    got = TiledConv(w, b, 1, 2, 1, 8, images=images)(x)
    assert torch.allclose(got, F.conv2d(x, w, b, 1, 2, 1, 8), atol=1e-12, rtol=1e-12)


def test_one_and_two_threads_agree_to_the_bit():
    """Large enough that two threads really split the work (above the kernel's threshold)."""
    x, w, b = _case(2, 32, 64, 3, 32, 32, integers=False, density=0.5)
    conv = TiledConv(w, b, 1, 1)
    one, two = conv(x, threads=1), conv(x, threads=2)
    assert torch.equal(one, two)
    assert torch.allclose(one, F.conv2d(x, w, b, 1, 1), atol=1e-4, rtol=1e-5)
    s1, s2 = TiledConv(w, b, 2, 1)(x, 1), TiledConv(w, b, 2, 1)(x, 2)
    assert torch.equal(s1, s2)
    # one image, two threads: fewer groups than threads, so the threads split output channels
    assert torch.equal(conv(x[:1], threads=2), one[:1])
    xs = x.repeat(9, 1, 1, 1)  # 18 images: two groups of 8 and a part of one
    packed = TiledConv(w, b, 1, 1, images=8)
    assert torch.equal(packed(xs, threads=1), packed(xs, threads=2))
    assert torch.allclose(packed(xs, threads=2), one.repeat(9, 1, 1, 1), atol=1e-5, rtol=1e-6)


def test_bad_inputs_are_refused_before_the_c_code():
    x, w, b = _case(1, 4, 5, 3, 9, 9)
    conv = TiledConv(w, b, 1, 1)
    with pytest.raises(ValueError, match="must be a CPU"):
        conv(x.double())
    with pytest.raises(ValueError, match="must be a CPU"):
        conv(x[:, :3])
    with pytest.raises(ValueError, match="smaller than the kernel"):
        TiledConv(w, b, 1, 0)(x[..., :2, :2])
    with pytest.raises(ValueError, match="multiple of groups"):
        TiledConv(w, b, 1, 1, 1, 2)
    with pytest.raises(ValueError, match="at least 1"):
        TiledConv(w, b, 1, 1, images=0)
    conv.ci = conv.ci + 100  # a corrupted channel index: refused, never read
    conv._offsets.clear()
    with pytest.raises(ValueError, match="outside the input"):
        conv(x)


def test_fastest_sparse_model_times_and_runs_convolutions(tmp_path):
    import pickle
    import subprocess
    import sys

    from incop.deploy.sparse_inference import SparseConv2d, fastest_sparse_model
    from incop.models.architectures import build_model
    from incop.pruning.masks import Masks

    torch.manual_seed(0)
    model = build_model("lenet5", (1, 28, 28), 10)
    g = torch.Generator().manual_seed(1)
    masks = {n: (torch.rand(p.shape, generator=g) < 0.05).float()
             for n, p in model.named_parameters() if n.endswith("weight")}
    fast, info = fastest_sparse_model(model, masks, (1, 28, 28), batch=8, repeats=2, warmup=1)
    convs = [r for r in info["layers"] if r["kind"] == "Conv2d"]
    assert len(convs) == 2 and all(r["direct_us"] is not None for r in convs)
    # every layout that fits a batch of 8 is timed, none interleaving more images than that
    assert all(r["direct_i8_us"] is not None and r["direct_i16_us"] is None for r in convs)
    masked = Masks(masks).apply(model) or model
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fast(x), masked(x), atol=1e-5)
    # any layer forced sparse, through pickling, in this process and a fresh one
    from incop.deploy.sparse_inference import sparse_model

    forced = sparse_model(masked, masks, {"features.0": "direct", "features.3": "direct-i8"})
    assert isinstance(forced.features[0], SparseConv2d) and forced.features[3].kernel == "direct-i8"
    path = tmp_path / "fast.pt"
    torch.save(forced, path)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(masked(x), tmp_path / "want.pt")
    code = ("import torch; m = torch.load('fast.pt', weights_only=False); x = torch.load('x.pt');"
            "w = torch.load('want.pt'); import sys;"
            "sys.exit(0 if torch.allclose(m(x), w, atol=1e-5) else 1)")
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == 0
    again = pickle.loads(pickle.dumps(forced))
    with torch.no_grad():
        assert torch.allclose(again(x), masked(x), atol=1e-5)


def test_a_saved_layer_naming_an_unknown_layout_is_refused():
    """The layout sets how many images the kernel interleaves, so buffer sizes: a saved fast
    model that names one incop does not have is refused, never sized by it."""
    import pickle

    from incop.deploy.sparse_inference import SparseConv2d

    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    sparse = SparseConv2d(conv, (torch.rand_like(conv.weight) < 0.3).float(), "direct-i8")
    assert pickle.loads(pickle.dumps(sparse)).kernel == "direct-i8"
    sparse.kernel = "direct-i1000000000"
    with pytest.raises(ValueError, match="is not one of"):
        pickle.loads(pickle.dumps(sparse))
    with pytest.raises(ValueError, match="is not one of"):
        SparseConv2d(conv, torch.ones_like(conv.weight), "direct-i2")


def test_a_gradient_goes_the_dense_way():
    from incop.deploy.sparse_inference import SparseConv2d

    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    mask = (torch.rand_like(conv.weight) < 0.3).float()
    sparse = SparseConv2d(conv, mask)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    sparse(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_incop_speed_times_the_rounds_asked_for(cli, tmp_path):
    argv = [*small_run(net_arch="lenet5", run_name="r"), "--output_dir", str(tmp_path)]
    code, _, err = cli(*argv)
    assert code == 0, err
    run = run_dir(*argv)
    code, _, err = cli("speed", str(run), "--rounds", "last", "--batches", "4", "--threads", "1",
                       "--repeats", "2", "--quiet")
    assert code == 0, err
    import csv

    with open(run / "speed_layers.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["round"] for r in rows} == {"2"}
    assert [r["layer"] for r in rows if r["kind"] == "Conv2d"] == ["features.0", "features.3"]
    assert all(r["direct_us"] for r in rows if r["kind"] == "Conv2d")
    with open(run / "speed.csv") as f:  # which layers took their ReLU/pooling: measured, so
        fused = [r["fused"] for r in csv.DictReader(f)]  # only its kind is known
    assert len(fused) == 1 and set(fused[0].split()) <= {"features.0", "features.3"}
    code, _, err = cli("speed", str(run), "--rounds", "7", "--quiet")
    assert code == 2 and "round 7 is not saved" in err
