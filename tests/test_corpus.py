import pytest

from model.corpus import Document, default_corpus_path, load_corpus, read_documents, split_corpus
from model.prompting import chat_prompt


def test_shipped_corpus_has_prompts_and_a_heldout_split():
    corpus = load_corpus()
    assert len(corpus.train) >= 250 and len(corpus.heldout) >= 25
    assert all(d.prompt for d in corpus.train)
    assert not set(corpus.train) & set(corpus.heldout)
    assert default_corpus_path().is_file()


def test_reply_documents_render_inside_the_chat_template(tiny_lm):
    lm, _, _ = tiny_lm
    doc = Document("Bees make honey.", prompt="Tell me about bees.")
    assert doc.render(lm.tokenizer) == chat_prompt(lm.tokenizer, "Tell me about bees.") + "Bees make honey.<|im_end|>"
    assert Document("Plain text.").render(lm.tokenizer) == "Plain text."


def test_text_files_are_chunked_by_paragraph(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(6)))
    docs = read_documents([path], chars_per_doc=400)
    assert 2 <= len(docs) <= 6 and all(d.prompt is None for d in docs)
    with pytest.raises(FileNotFoundError, match="missing"):
        read_documents([tmp_path / "missing.txt"])


def test_split_is_deterministic_and_fingerprinted():
    docs = [f"doc {i}" for i in range(20)]
    a, b = split_corpus(docs, 0.2), split_corpus(docs, 0.2)
    assert a == b and len(a.heldout) == 4
    assert split_corpus(docs[:-1], 0.2).fingerprint != a.fingerprint
