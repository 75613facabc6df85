"""--net_augment (incop.data.augment): the batched crop and flip against a loop by hand, and
augmenting what is not an image is one line."""
import torch


def test_crop_and_flip_by_hand():
    """The batched indexing against a per-image loop: pad by 4, crop at the drawn offsets,
    mirror the flagged ones; offsets (4, 4) without a flip give the image back."""
    from incop.data.augment import crop_flip, draw

    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, 9, 11, generator=g)
    oy, ox, flip = draw(torch.Generator().manual_seed(5), 6)
    oy[0], ox[0], flip[0] = 4, 4, False
    got = crop_flip(x, oy, ox, flip)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        want = padded[i, :, oy[i]:oy[i] + 9, ox[i]:ox[i] + 11]
        assert torch.equal(got[i], want.flip(-1) if flip[i] else want), i
    assert torch.equal(got[0], x[0])
    assert {int(v) for v in oy} <= set(range(9)) and flip.dtype == torch.bool


def test_augmenting_what_is_not_an_image_is_one_line(cli, tmp_path):
    import numpy as np

    f = tmp_path / "v.npz"
    np.savez(f, x_train=np.random.default_rng(0).normal(size=(800, 16)).astype(np.float32),
             y_train=np.arange(800) % 2)
    code, _, err = cli("run", "--net_dataset", "npz", "--data_dir", str(f), "--net_augment",
                       "--prune_method", "sap", "--quiet", "--output_dir", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and "not images" in err
