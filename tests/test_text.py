from m4i_utils.data.text import Vocabulary, tokenize


def test_tokenize_is_offline_and_lowercases():
    assert tokenize("A Dog, running; isn't it?") == ["a", "dog", "running", "isn't", "it"]


def test_vocabulary_threshold_and_specials():
    caps = ["a dog runs"] * 4 + ["a cat sits"] * 3
    vocab = Vocabulary.build(caps, threshold=4)
    assert vocab.itos[:4] == ("<pad>", "<start>", "<end>", "<unk>")
    assert set(vocab.itos[4:]) == {"a", "dog", "runs"}
    ids = vocab.encode("a cat runs")
    assert ids[0] == 1 and ids[-1] == 2 and ids[2] == 3
    assert vocab.decode(ids[1:]) == "a runs"


def test_vocabulary_roundtrip(tmp_path):
    vocab = Vocabulary.build(["x y z"] * 5, threshold=1)
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab
