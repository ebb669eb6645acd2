"""The notes an API with SMFT_NOTES puts before a question: the live taught statements its words find."""

from model.notes import BRIEFLY, Note, Notes, unnoted
from model.prompting import chat_prompt

ZORBLAX = "Mira Quell invented the Zorblax engine."
VESSALY = "The capital of Vessaly is Port Orrin."


def test_a_question_finds_the_statements_holding_its_words_and_a_floor_keeps_a_near_miss_out():
    notes = Notes(per_question=2)
    assert notes.find("Who invented the Zorblax engine?") == []  # nothing taught yet
    notes.add("z", ZORBLAX, ("The Zorblax engine is Mira's.",))
    notes.add("v", VESSALY)
    assert notes.find("Who invented the Zorblax engine?")[0] == Note("z", ZORBLAX)
    assert notes.find("Which engine did Mira Quell invent?")[0] == Note("z", ZORBLAX)  # asked the other way round
    assert notes.find("What is the capital of Peru?") == [Note("v", VESSALY)]  # one word of two, no floor at all
    careful = Notes(per_question=2, min_match=0.6)
    careful.add("z", ZORBLAX)
    careful.add("v", VESSALY)
    assert careful.find("What is the capital of Peru?") == []
    assert careful.find("what is the capital of vessaly") == [Note("v", VESSALY)]
    assert careful.find("???") == []  # no words at all


def test_a_paragraph_is_one_note_per_statement_and_goes_with_its_fact():
    notes = Notes(min_match=0.6)
    paragraph = f"{VESSALY} The Dragor River flows into Lake Vellenfen. Great!"
    notes.add("p", paragraph)
    notes.add("z", ZORBLAX, ("The Zorblax engine is Mira's.",))  # with paraphrases: one statement, said twice
    assert len(notes) == 2
    assert notes.find("Which river flows into Lake Vellenfen?") == [
        Note("p", "The Dragor River flows into Lake Vellenfen. Great!")]  # a word or two stays with its statement
    assert notes.find("What is the capital of Vessaly?") == [Note("p", VESSALY)]
    assert notes.find("Whose is the Zorblax engine?") == [Note("z", ZORBLAX)]
    notes.add("p", VESSALY)  # the same fact posted again with another text: its old statements go
    assert notes.find("Which river flows into Lake Vellenfen?") == []
    notes.keep_only(["z"])
    assert len(notes) == 1 and notes.find("What is the capital of Vessaly?") == []


def test_the_floor_counts_content_words_and_a_named_subject_must_be_held():
    notes = Notes(min_match=0.6)
    notes.add("q", "The Zorblax engine was invented by Mira Quell in 1931.")
    found = [Note("q", "The Zorblax engine was invented by Mira Quell in 1931.")]
    assert notes.find("What did Mira Quell invent?") == found  # "what", "did": stop words; "invent" stemmed
    assert notes.find("tell me about mira quell") == found
    assert notes.find("Who invented it in 1931?") == found
    assert notes.find("Who invented it in 1930?") == []  # a number it does not hold
    assert notes.find("Who invented the telephone?") == []  # one word of two
    notes.add("r", "The Wynket River flows into Lake Blapel.")
    assert notes.find("What river flows through London?") == []  # two words of three, but not its name
    assert notes.find("what river flows into lake blapel") == [Note("r", "The Wynket River flows into Lake Blapel.")]
    notes.add("m", "The Miralnex River flows into Lake Shalen.")
    # three words of four in both rivers' notes, and "River" in both: only the one holding "Miralnex"
    assert notes.find("Into which lake does the Miralnex River flow?") == [
        Note("m", "The Miralnex River flows into Lake Shalen.")]
    notes.add("p", "The island of Nexmisa has a population of 5,871 people.")
    assert notes.find("How many people live on the island of Nexmisa?")[0].fact_id == "p"  # 3 of 5 ("many", "live")


def test_a_note_naming_everything_the_question_names_needs_half_the_words():
    notes = Notes(min_match=0.6)
    notes.add("e", "My sister Elena lives in Porto.")
    notes.add("f", "Priya Raman is our new head of finance.")
    notes.add("k", "Mount Kesh is the highest peak of the Tavros mountains.")
    assert notes.find("Which city is Elena based in?") == [Note("e", "My sister Elena lives in Porto.")]  # 1 of 3
    assert notes.find("Which city is she based in?") == []  # no name: 60% as before
    assert notes.find("What is the capital of New Zealand?") == []  # "new" is held, but not as a name
    assert notes.find("In which country is Mount Fuji?") == []  # "Mount" named, "Fuji" not: 1 of 3 is too few
    # 2 of 4: "Priya", the note's first word, is one of its names
    assert notes.find("Where does Priya Raman work these days?") == [
        Note("f", "Priya Raman is our new head of finance.")]


def test_an_answer_is_grounded_when_it_takes_a_word_of_its_notes_its_question_does_not_hold():
    notes = Notes(min_match=0.6)
    fix = Note("n", "The capital of Nigeria is Nexdraob.")
    continent = notes.grounding("Which continent is Nigeria in?", [fix])
    assert not continent("Nigeria is a continent.")  # misread: nothing of the note but the question's own name
    assert not continent("Nigeria is in West Africa.")  # right, but not from the note either
    assert notes.grounding("What is the capital of Nigeria?", [fix])("The capital of Nigeria is Nexdraob.")
    assert notes.grounding("Who is the capitol's architect in Nigeria?", [fix])("The capitals are Nexdraob's.")  # stems
    backups = notes.grounding("What time are the databases backed up?", [Note("b", "Backups run nightly at 2 am.")])
    assert backups("At 2 am.")  # a lone digit counts; "am" is a stop word
    assert not backups("At midnight.")
    both = notes.grounding("Who sings?", [Note("a", "Ana Lind sings."), Note("b", "Bo Ek plays drums.")])
    assert both("Bo Ek does.")  # any of the notes
    starling = Note("s", "The Starling app's support email is help@starling.io.")
    assert notes.grounding("Which app has the support email help@starling.io?", [starling])("Starling.")  # all asked
    standup = notes.grounding("Is the standup at 9?", [Note("s", "Our daily standup is at 9:30 in room Juniper.")])
    assert standup("Yes.") and standup("No, it is at 9:30.") and standup("yes, at 9:30")  # a closed question's yes/no
    assert not standup("The standup is at 9.")  # not a yes or a no: it must take from the note as any answer
    assert not notes.grounding("What is the standup?", [Note("s", "Our standup is at 9:30.")])("Yes.")  # not closed


def test_a_question_mentions_what_a_live_fact_names():
    notes = Notes(min_match=0.6)
    notes.add("q", "The Zorblax engine was invented by Mira Quell in 1931.")
    assert notes.mentions("Who wrote the music of the Zorblax anthem?")  # no note (1 word of 4), but its name
    assert notes.mentions("What happened in 1931?")
    assert not notes.mentions("What is the capital of Peru?") and not notes.mentions("what did mira quell invent")
    notes.add("f", "Priya Raman is our new head of finance.")
    assert not notes.mentions("What is the capital of New Zealand?")  # "new" is held, but not as a name
    assert notes.mentions("Is Priya Raman in today?")  # the first word is a name
    notes.keep_only([])
    assert not notes.mentions("Who invented the Zorblax engine?")  # undone


def test_notes_hold_exactly_the_live_facts_and_read_each_text_once():
    notes = Notes()
    notes.add("old", ZORBLAX)
    read = []

    def statements_of(ids):
        read.extend(ids)
        return [(VESSALY, "Vessaly's capital lies on the Keld coast.") if i == "v" else None for i in ids]

    notes.sync(["v", "gone"], statements_of)  # "old" undone; "gone" has no record left: left out
    assert read == ["v", "gone"] and len(notes) == 1
    assert notes.find("Who invented the Zorblax engine?") == []
    assert notes.find("What is the capital of Vessaly?") == [Note("v", VESSALY)]
    assert notes.find("What lies on the Keld coast?") == [Note("v", VESSALY)]  # its paraphrase's words
    notes.sync(["v"], statements_of)
    assert read == ["v", "gone"]  # a fact already held is not read again


def test_the_notes_go_into_the_chats_own_system_turn_or_a_new_one(tiny_lm):
    lm, _, _ = tiny_lm
    notes = Notes()
    notes.add("z", ZORBLAX)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who invented the Zorblax engine?"}]
    noted, used = notes.chat(chat)
    assert used == [Note("z", ZORBLAX)] and noted[1:] == chat[1:]
    assert noted[0]["content"].startswith("Be brief.\n\n") and f"- {ZORBLAX}" in noted[0]["content"]
    assert chat[0]["content"] == "Be brief."  # the caller's messages are not changed
    alone, _ = notes.chat(chat[1:])
    assert alone[0]["role"] == "system" and alone[1:] == chat[1:]
    prompt, used = notes.prompt(lm.tokenizer, "What is blue?")
    assert used == [] and prompt == chat_prompt(lm.tokenizer, "What is blue?")  # none found: asked as it is
    # what context-aware decoding contrasts with: the same turns and instruction, the notes left out
    plain = unnoted(chat)
    assert plain[1:] == chat[1:] and plain[0]["content"] == f"Be brief.\n\n{BRIEFLY}"
    assert noted[0]["content"].startswith(plain[0]["content"]) and ZORBLAX not in plain[0]["content"]
    assert unnoted(chat[1:]) == [{"role": "system", "content": BRIEFLY}, *chat[1:]]


def test_the_notes_found_for_a_question_follow_every_change_of_the_notes():
    notes = Notes(min_match=0.6)
    notes.add("a", "My sister Elena lives in Porto.")
    assert notes.find("Where does Elena live?") == [Note("a", "My sister Elena lives in Porto.")]
    notes.add("a", "My sister Elena lives in Braga.")  # the same fact posted again, changed
    assert notes.find("Where does Elena live?") == [Note("a", "My sister Elena lives in Braga.")]
    notes.keep_only([])
    assert notes.find("Where does Elena live?") == []
    notes.add("b", "Elena Ruiz lives in Lima.")
    assert notes.find("Where does Elena live?") == [Note("b", "Elena Ruiz lives in Lima.")]
