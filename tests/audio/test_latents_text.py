"""The diffusion experiment's fixed latent representation and its text conditioning."""

import numpy as np
import pytest

from aria.audio.latents import FrameDCT
from aria.audio.text import ClapTextEncoder, HashTextEncoder, caption, get_text_encoder


def _dct_matrix(n):
    """The orthonormal DCT-II matrix from its definition."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    D = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    D[0] /= np.sqrt(2.0)
    return D


def test_frame_dct_against_its_definition_and_round_trip():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    rep = FrameDCT(frame=8, sr=100)
    z = rep.encode(y)
    assert z.shape == (8, 7)  # ceil(50 / 8) frames, the last padded with zeros
    frames = np.zeros(56)
    frames[:50] = y
    want = _dct_matrix(8) @ frames.reshape(7, 8).T
    np.testing.assert_allclose(z, want, atol=1e-12)
    np.testing.assert_allclose(rep.decode(z, 50), y, atol=1e-12)
    assert np.isclose((z**2).sum(), (y**2).sum())  # orthonormal: energy kept
    # a fitted scale divides each channel by its standard deviation over the frames, and still inverts
    ys = [rng.normal(size=40) * np.linspace(1, 3, 40), rng.normal(size=24)]
    rep.fit(ys)
    C = np.concatenate([(_dct_matrix(8) @ np.pad(v, (0, -len(v) % 8)).reshape(-1, 8).T).T for v in ys])
    np.testing.assert_allclose(rep.scale, C.std(0), rtol=1e-12)
    np.testing.assert_allclose(rep.decode(rep.encode(ys[0]), 40), ys[0], atol=1e-12)
    assert rep.frames_per_second == 12.5
    with pytest.raises(ValueError, match="latents"):
        rep.decode(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="mono"):
        rep.encode(np.zeros((2, 10)))


def test_hash_text_encoder_and_captions():
    enc = HashTextEncoder(dim=32, max_words=6, seed=3)
    t, m = enc(["genre: jazz, tempo: 120 bpm", "Jazz", ""])
    assert t.shape == (3, 6, 32) and m.tolist()[0] == [True] * 5 + [False]
    np.testing.assert_array_equal(t[1, 0], t[0, 1])  # the same word, the same vector, case folded
    assert not m[2].any() and np.all(t[2] == 0)
    again, _ = HashTextEncoder(dim=32, max_words=6, seed=3)(["jazz"])
    np.testing.assert_array_equal(again[0, 0], t[1, 0])  # deterministic across instances
    other, _ = HashTextEncoder(dim=32, max_words=6, seed=4)(["jazz"])
    assert not np.allclose(other[0, 0], t[1, 0])  # the seed matters
    words = np.stack([enc.vector(w) for w in ("a", "b", "c", "d", "e", "f", "g", "h")])
    G = words @ words.T
    assert np.all(np.abs(G - np.diag(np.diag(G))) < 0.8) and np.allclose(np.diag(G), 1, atol=0.6)
    assert caption({"genre": "reel", "tempo": 118.4, "key": "D major", "instrument": ""}) == (
        "genre: reel, tempo: 118 bpm, key: D major"
    )
    assert caption({"genre": "reel", "tempo": float("nan")}) == "genre: reel"
    with pytest.raises(ValueError, match="text_encoder.kind"):
        get_text_encoder("t5")


def test_clap_text_encoder_reads_a_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "genre", ":", "jazz", "reel", "tempo", ","]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    cfg = transformers.ClapTextConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        projection_dim=8, max_position_embeddings=40, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.ClapTextModelWithProjection(cfg).eval()
    folder = tmp_path / "clap_text"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    enc = get_text_encoder("clap", path=str(folder))
    texts = ["genre: jazz", "genre: reel, tempo"]
    t, m = enc(texts)
    assert t.shape == (2, 1, 8) and m.all()
    ids = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(**ids).text_embeds.double().numpy()
    np.testing.assert_allclose(t[:, 0], want, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ClapTextEncoder(path=str(tmp_path / "missing"))


def test_oobleck_codec_reads_a_local_vae_and_matches_it(tmp_path):
    """A Stable Audio VAE from a local folder: latents are the posterior mean of the mono signal copied
    to every audio channel, padded to whole frames; decoding averages the channels."""
    import torch
    from diffusers.models.autoencoders.autoencoder_oobleck import AutoencoderOobleck

    from aria.audio.latents import OobleckCodec, get_codec

    torch.manual_seed(0)
    vae = AutoencoderOobleck(
        encoder_hidden_size=8,  # the posterior splits it in two: 4 latent channels
        downsampling_ratios=[2, 4],
        channel_multiples=[1, 2],
        decoder_channels=4,
        decoder_input_channels=4,
        audio_channels=2,
        sampling_rate=8000,
    ).eval()
    vae.save_pretrained(tmp_path / "vae")
    codec = get_codec("oobleck", path=str(tmp_path / "vae"))
    assert isinstance(codec, OobleckCodec) and (codec.sr, codec.frame, codec.channels) == (8000, 8, 4)
    y = np.random.default_rng(1).normal(size=50).astype(np.float32) * 0.1
    z = codec.encode(y)
    assert z.shape == (4, 7)  # ceil(50 / 8) frames
    x = torch.zeros(1, 2, 56)
    x[:, :, :50] = torch.from_numpy(y)
    with torch.no_grad():
        want = vae.encode(x).latent_dist.mean[0].double().numpy()
        back = vae.decode(torch.from_numpy(want).float()[None]).sample[0].mean(0).double().numpy()
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(codec.decode(z, 50), back[:50], rtol=1e-4, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="AutoencoderOobleck folder"):
        OobleckCodec(path=str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="'dct' or 'oobleck'"):
        get_codec("vae")
