"""The ESM alphabet: 33 tokens with ESM's indices."""

import numpy as np

from omnimask.modalities.protein import alphabet


def test_esm_indices_for_a_known_sequence():
    assert len(alphabet.TOKENS) == 33
    assert alphabet.TOKENS[:4] == ("<cls>", "<pad>", "<eos>", "<unk>") and alphabet.TOKENS[32] == "<mask>"
    assert "".join(alphabet.TOKENS[4:24]) == "LAGVSERTIDPKQNFYMHWC"
    assert alphabet.TOKENS[24:31] == tuple("XBUZO.-") and alphabet.TOKENS[31] == "<null_1>"
    ids = alphabet.encode("MKTAYIAK")
    # <cls> M K T A Y I A K <eos>
    assert ids.tolist() == [0, 20, 15, 11, 5, 19, 12, 5, 15, 2]
    assert alphabet.decode(ids) == "MKTAYIAK"
    assert alphabet.encode("XBUZO").tolist() == [0, 24, 25, 26, 27, 28, 2]
    assert ids.dtype == np.int64
