from model.recasing import TaughtNames, typed_in_lower_case


def names(*texts: str) -> TaughtNames:
    held = TaughtNames()
    for i, text in enumerate(texts):
        held.add(f"f{i}", text)
    return held


def test_a_lower_case_question_gets_the_taught_names_back():
    held = names("The Zorblax engine was invented by Mira Quell in 1931.",
                 "The capital of the island of Vessaly is Port Orrin.")
    assert held.recase("who invented the zorblax engine") == "who invented the Zorblax engine"
    assert held.recase("what is the capital of vessaly?") == "what is the capital of Vessaly?"
    # a name of several words is one name: "Port Orrin", not a lone "Orrin"
    assert held.recase("which island has port orrin as its capital") == "which island has Port Orrin as its capital"
    assert held.recase("where is orrin") == "where is orrin"
    assert held.recase("mira quell's engine, please.") == "Mira Quell's engine, please."


def test_the_askers_own_casing_is_kept_and_words_inside_other_words_are_not_names():
    held = names("The Zorblax engine was invented by Mira Quell in 1931.")
    assert held.recase("Who invented the zorblax engine?") == "Who invented the zorblax engine?"
    assert held.recase("what do zorblaxes eat") == "what do zorblaxes eat"
    assert held.recase("1931") == "1931"  # numbers are not names, and there is nothing to case
    assert not typed_in_lower_case("1931") and not typed_in_lower_case("Hi there")


def test_names_follow_the_live_facts():
    held = names("The Zorblax engine was invented by Mira Quell in 1931.")
    read = []

    def texts_of(ids):
        read.extend(ids)
        return ["The capital of Vessaly is Port Orrin." if i == "v" else None for i in ids]

    held.sync(["v"], texts_of)  # f0 taken back, v taught
    assert read == ["v"] and len(held) == 1
    assert held.recase("who invented the zorblax engine") == "who invented the zorblax engine"
    assert held.recase("where is port orrin") == "where is Port Orrin"
    held.sync(["v"], texts_of)
    assert read == ["v"]  # a fact already held is not read again


def test_only_the_last_user_turn_of_a_chat_is_recased():
    held = names("The Zorblax engine was invented by Mira Quell in 1931.")
    chat = [{"role": "system", "content": "answer briefly"},
            {"role": "user", "content": "who made the zorblax engine"},
            {"role": "assistant", "content": "mira quell"},
            {"role": "user", "content": "when did mira quell make it"}]
    out = held.recase_chat(chat)
    assert out[:3] == chat[:3] and out[3] == {"role": "user", "content": "when did Mira Quell make it"}
    assert chat[3]["content"] == "when did mira quell make it"  # the caller's messages are not changed


def test_the_api_reads_new_facts_names_once_and_waits_out_a_redis_that_is_away(tmp_path):
    import torch

    from service.engine import Engine
    from worker.settings import CommonSettings

    class Store:
        def __init__(self) -> None:
            self.calls, self.away = [], True

        def fact_statements(self, ids):
            self.calls.append(list(ids))
            if self.away:
                raise ConnectionError("Redis away")
            return [("The Zorblax engine was invented by Mira Quell in 1931.",) for _ in ids]

    store = Store()
    engine = Engine(CommonSettings(data_dir=tmp_path), store)
    try:
        engine.replica.writers.update({"zorblax": {1: torch.tensor([3, 4])}})
        engine.replica.version = 1
        assert engine.recased("who is mira quell") == "who is mira quell"  # no names yet: asked as typed
        assert engine.recased("who is mira quell") == "who is mira quell"
        assert len(store.calls) == 1  # not asked again at once: each question would wait out the timeout
        assert engine.recased("Who is mira quell") == "Who is mira quell" and len(store.calls) == 1

        store.away, engine._live_retry_at = False, 0.0  # Redis back, the pause over
        assert engine.recased("who is mira quell") == "who is Mira Quell"
        assert engine.recased_chat([{"role": "user", "content": "and mira quell?"}]) == \
            [{"role": "user", "content": "and Mira Quell?"}]
        assert store.calls[1:] == [["zorblax"]]  # read once for this version
    finally:
        engine.close()
