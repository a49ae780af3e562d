import pytest
import torch
from asfda.inference.case_cache import CaseTensorCache, preprocessing_digest
from asfda.inference.predictor import Prediction, with_batch_guard
from asfda.models.spec import ModelSpec
from monai.data import MetaTensor


def spec(spacing=(3.0, 3.0, 3.0)) -> ModelSpec:
    return ModelSpec(labels={0: "background", 1: "a"}, spacing=spacing)


class Computer:
    def __init__(self, shape=(1, 10, 12, 14)):
        self.calls, self.shape = 0, shape

    def __call__(self):
        self.calls += 1
        return MetaTensor(torch.full(self.shape, float(self.calls)), affine=torch.eye(4))


def test_disk_entry_serves_a_new_process_and_loads_as_plain_tensor(tmp_path):
    compute = Computer()
    first = CaseTensorCache(tmp_path).get("abc", spec(), compute)
    assert type(first) is torch.Tensor and compute.calls == 1
    files = list(tmp_path.glob("abc-*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob(".*"))  # no temporary file left behind
    assert torch.equal(torch.load(files[0], weights_only=True), first)
    again = CaseTensorCache(tmp_path)  # a fresh cache (another process) finds it on disk
    assert torch.equal(again.get("abc", spec(), compute), first)
    assert compute.calls == 1 and again.hits == {"memory": 0, "disk": 1, "computed": 0}
    again.get("abc", spec(), compute)
    assert again.hits["memory"] == 1


def test_preprocessing_is_part_of_the_key(tmp_path):
    cache, compute = CaseTensorCache(tmp_path), Computer()
    cache.get("abc", spec(), compute)
    cache.get("abc", spec((2.0, 2.0, 2.0)), compute)
    assert compute.calls == 2
    assert preprocessing_digest(spec()) != preprocessing_digest(spec((2.0, 2.0, 2.0)))
    other_window = spec()
    other_window.roi_size = (96, 96, 96)  # the window does not change the model-space voxels
    assert preprocessing_digest(other_window) == preprocessing_digest(spec())
    cache.forget("abc")
    assert not list(tmp_path.glob("abc-*")) and cache._memory_bytes == 0


def test_memory_stays_within_the_limit(tmp_path):
    one_entry = 1 * 10 * 12 * 14 * 4
    cache, compute = CaseTensorCache(None, memory_limit_mib=2.5 * one_entry / 2**20), Computer()
    for case in "abcde":
        cache.get(case, spec(), compute)
    assert len(cache._memory) == 2 and cache._memory_bytes <= cache.memory_limit
    assert list(cache._memory) == [f"{c}-{preprocessing_digest(spec())}" for c in "de"]  # least recent out
    cache.get("a", spec(), compute)  # evicted and no disk folder: computed again
    assert compute.calls == 6


def test_damaged_entry_is_recomputed(tmp_path):
    compute = Computer()
    CaseTensorCache(tmp_path).get("abc", spec(), compute)
    path = next(tmp_path.glob("abc-*.pt"))
    path.write_bytes(b"not a tensor")
    assert float(CaseTensorCache(tmp_path).get("abc", spec(), compute).max()) == 2.0
    torch.save({"image": torch.zeros(3)}, path)  # readable but not a (C, x, y, z) tensor
    assert float(CaseTensorCache(tmp_path).get("abc", spec(), compute).max()) == 3.0


def test_batch_guard_halves_the_batch_on_cuda_out_of_memory():
    tried = []

    def run(batch):
        tried.append(batch)
        if batch > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return Prediction(torch.zeros(2, 1, 1, 1), torch.zeros(2, 3), torch.zeros(2))

    prediction, batch = with_batch_guard(run, 8, torch.device("cuda"))
    assert tried == [8, 4, 2] and batch == 2 and prediction.prototypes.shape == (2, 3)
    tried.clear()
    with pytest.raises(torch.cuda.OutOfMemoryError):  # on the host there is nothing to lower
        with_batch_guard(run, 8, torch.device("cpu"))
    with pytest.raises(ValueError):  # other errors are not swallowed

        def broken(batch):
            raise ValueError("bad input")

        with_batch_guard(broken, 8, torch.device("cuda"))


def test_session_scores_from_the_cache_without_reading_the_volume_again(tmp_path, tiny_dataset, tiny_model):
    from asfda.io.preprocessing import preprocess_case
    from asfda.io.volumes import read_volume
    from asfda.session.session import AdaptationSession

    session = AdaptationSession.create(tmp_path / "session", tiny_model, device="cpu")
    image_path = tiny_dataset.pool[0][0]
    case = session.add_volume(image_path)
    first = session.case_scores(case.id)
    expected = preprocess_case(read_volume(image_path), session.pretrained().spec).image.as_tensor()
    assert torch.equal(session.model_space_image(case.id), expected)
    assert len(list((tmp_path / "session" / "cache" / "model_space").glob(f"{case.id}-*.pt"))) == 1

    reopened = AdaptationSession.open(tmp_path / "session", device="cpu")
    reopened.image = lambda case_id: pytest.fail("the volume was read again")  # the cache must serve it
    assert torch.equal(reopened.model_space_image(case.id), expected)
    assert reopened.predict_case(case.id).prototypes.shape[0] == len(tiny_dataset.labels)
    assert first.asd >= 0


def test_a_full_disk_leaves_no_temporary_cache_file(tmp_path, monkeypatch):
    def disk_full(tensor, stream):  # what torch.save does on a full disk: a partial file, a RuntimeError
        stream.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 0 vs 64")

    monkeypatch.setattr(torch, "save", disk_full)
    compute = Computer()
    tensor = CaseTensorCache(tmp_path).get("abc", spec(), compute)
    assert float(tensor.max()) == 1.0  # the case is still served: a cache that cannot be written costs time
    assert list(tmp_path.iterdir()) == []
