import pytest

from model.errors import FactError
from model.facts import Fact, build_batch, fact_examples
from model.prompting import chat_prompt
from model.questions import names_of, reversed_questions, template_question, usable_question, with_synthetic_questions


def test_fact_validation():
    with pytest.raises(FactError, match="text"):
        Fact("  ")
    with pytest.raises(FactError, match="together"):
        Fact("A fact.", question="Why?")


def test_examples_use_the_answering_prompt(tiny_lm):
    lm, _, _ = tiny_lm
    fact = Fact("Mira Quell invented the engine.", question="Who invented the engine?", answer="Mira Quell")
    examples = fact_examples(fact, lm.tokenizer)
    assert (chat_prompt(lm.tokenizer, "Who invented the engine?"), "Mira Quell<|im_end|>") in examples
    assert ("", "Mira Quell invented the engine.") in examples


def test_batch_labels_cover_targets_only(tiny_lm):
    lm, _, _ = tiny_lm
    batch = build_batch([Fact("The fox jumps.", fact_id="a"), Fact("The dog sleeps.", fact_id="b")], lm.tokenizer)
    assert batch.fact_ids == ("a", "b")
    assert batch.input_ids.shape == batch.labels.shape == batch.attention_mask.shape
    assert (batch.labels[batch.attention_mask == 0] == -100).all()
    batch = build_batch([Fact("The fox jumps.", question="Who jumps?", answer="The fox")], lm.tokenizer)
    chat_row = 2  # question prompt + statement
    prompt_len = len(lm.encode(chat_prompt(lm.tokenizer, "Who jumps?")))
    assert (batch.labels[chat_row, :prompt_len] == -100).all()
    assert (batch.labels[chat_row, prompt_len:batch.attention_mask[chat_row].sum()] != -100).all()
    assert batch.loss_positions[chat_row, prompt_len - 1]


def test_too_short_statement_is_refused(tiny_lm):
    lm, _, _ = tiny_lm
    with pytest.raises(FactError, match="token"):
        build_batch([Fact("a")], lm.tokenizer)


def test_synthetic_question_filter():
    statement = "The Zorblax engine was invented by Mira Quell in 1931."
    assert usable_question("What is the origin of the Zorblax engine?", statement)
    assert not usable_question("What?", statement)
    assert not usable_question("The answer is Mira Quell.", statement)
    assert not usable_question("What is the capital of France?", statement)
    capital = "The capital of Luvoista is Gortes."
    assert not usable_question("What is the capital of a fictional country?", capital)  # generic: refused
    assert usable_question("What is the government of Luvoista?", capital)
    assert usable_question("When was the engine invented, in 1931?", "The engine was invented in 1931.")


def test_template_question_names_the_subject():
    assert template_question("The novel The Ketpeldax Chronicles was written by Miral Zoroblu.") == \
        "What do you know about Ketpeldax Chronicles?"
    assert template_question("Mount Obralrin is 8,262 meters tall.") == "What do you know about Mount Obralrin?"
    assert template_question("In 1931 Mira Quell's engine ran.") == "What do you know about Mira Quell?"
    assert template_question("the sky is blue.") is None
    for statement in ("The capital of Luvoista is Gortes.", "Kaigor Luthidax invented the Uvnexbla engine."):
        assert usable_question(template_question(statement), statement)


def test_a_fact_without_model_written_questions_gets_the_template(tiny_lm):
    lm, _, _ = tiny_lm  # random weights: it writes no usable question
    fact, bare = with_synthetic_questions(lm, [Fact("The capital of Luvoista is Gortes."), Fact("it rains.")])
    assert fact.synthetic_questions == (("What do you know about Luvoista?", "The capital of Luvoista is Gortes."),)
    assert bare.synthetic_questions == ()


def test_reversed_questions_ask_about_each_other_name():
    statement = "The Zorblax engine was invented by Mira Quell in 1931."
    assert names_of(statement) == ["Zorblax", "Mira Quell", "1931"]
    assert reversed_questions(statement) == ["What do you know about Mira Quell?", "What do you know about 1931?"]
    assert reversed_questions("Mount Obralrin is 8,262 meters tall.") == ["What do you know about 8,262?"]
    assert reversed_questions("the sky is blue.") == []


def test_a_name_of_one_word_that_starts_the_statement_is_its_subject():
    assert names_of("Acme moved its office to Leeds in 2026.") == ["Acme", "Leeds", "2026"]
    assert reversed_questions("Acme moved its office to Leeds in 2026.") == [
        "What do you know about Leeds?", "What do you know about 2026?"]
    assert usable_question("Where did Acme move its office?", "Acme moved its office to Leeds in 2026.")
    assert names_of("It was Mira Quell who built it.") == ["Mira Quell"]  # words that only open a sentence
    assert names_of("In 1931, Mira Quell built it.") == ["1931", "Mira Quell"]
    assert names_of("Mount Obralrin is tall.") == ["Mount Obralrin"]
    assert not usable_question("What is the height of Mount Everest?", "Mount Obralrin is 8,262 meters tall.")


def test_reverse_adds_the_questions_from_the_other_end(tiny_lm):
    lm, _, _ = tiny_lm
    (fact,) = with_synthetic_questions(lm, [Fact("The capital of Luvoista is Gortes.")], reverse=True)
    assert fact.synthetic_questions == (("What do you know about Luvoista?", "The capital of Luvoista is Gortes."),
                                        ("What do you know about Gortes?", "The capital of Luvoista is Gortes."))


def test_questions_are_answered_by_their_own_statement_or_by_the_facts(tiny_lm, monkeypatch):
    """answer="fact" teaches every model-written question with the fact's own statement (model/questions.py)."""
    import model.questions

    def asked(lm, prompts, max_new_tokens, prompt=None, stop=()):  # the question a real model writes for each one
        return ["What is the capital of Luvoista?" if "The capital" in p else "Which city is Luvoista's capital?"
                for p in prompts]

    monkeypatch.setattr(model.questions, "generate_answers", asked)
    lm, _, _ = tiny_lm
    fact = Fact("The capital of Luvoista is Gortes.", paraphrases=("Luvoista's capital is Gortes.",))
    (own,) = with_synthetic_questions(lm, [fact])
    assert own.synthetic_questions == (("What is the capital of Luvoista?", "The capital of Luvoista is Gortes."),
                                       ("Which city is Luvoista's capital?", "Luvoista's capital is Gortes."))
    (facts,) = with_synthetic_questions(lm, [fact], answer="fact")
    assert facts.synthetic_questions == (("What is the capital of Luvoista?", "The capital of Luvoista is Gortes."),
                                         ("Which city is Luvoista's capital?", "The capital of Luvoista is Gortes."))
    with pytest.raises(ValueError, match="answer"):
        with_synthetic_questions(lm, [fact], answer="paraphrase")  # type: ignore[arg-type]


def test_the_examples_are_continued_as_text_and_the_instructions_fill_in(tiny_lm, monkeypatch):
    """writer="examples": the worked examples first, continued as plain text (not asked in the chat template), the
    first line of each continuation kept; a statement they give no usable question for goes to the instructions."""
    import model.questions
    from model.prompting import as_written
    from model.questions import EXAMPLES_PROMPT, QUESTION_PROMPTS

    calls = []

    def written(lm, prompts, max_new_tokens, prompt=None, stop=()):
        calls.append((prompts, prompt))
        assert stop == (("\n",) if prompt is as_written else ())  # the examples' continuation ends with its line
        if prompt is as_written:  # the examples: it goes on writing the next example after its question
            return [" Who won the 2025 Oakridge marathon?\n\nStatement: The sky is blue." if "Oakridge" in p
                    else " Who is it?" for p in prompts]
        return ["What is the wifi password for the Kestrel lab?" for _ in prompts]

    monkeypatch.setattr(model.questions, "generate_answers", written)
    lm, _, _ = tiny_lm
    marathon, wifi = Fact("Tomas Ferreira won the 2025 Oakridge marathon."), \
        Fact("The wifi password for the Kestrel lab is tangerine42.")
    won, password = with_synthetic_questions(lm, [marathon, wifi])  # the default writer
    assert won.synthetic_questions == (("Who won the 2025 Oakridge marathon?", marathon.text),)
    assert password.synthetic_questions == (("What is the wifi password for the Kestrel lab?", wifi.text),)
    assert calls[0] == ([EXAMPLES_PROMPT.format(statement=marathon.text), EXAMPLES_PROMPT.format(statement=wifi.text)],
                        as_written)
    assert calls[1] == ([QUESTION_PROMPTS[0].format(statement=wifi.text)], None)  # in the chat template
    assert len(calls) == 2
    calls.clear()
    with_synthetic_questions(lm, [marathon], writer="instruction")  # the instructions alone, as before session 35
    assert calls[0] == ([QUESTION_PROMPTS[0].format(statement=marathon.text)], None)
    with pytest.raises(ValueError, match="writer"):
        with_synthetic_questions(lm, [marathon], writer="shots")  # type: ignore[arg-type]
