"""The one prompt format shared by answering and teaching, so taught facts surface in answers."""

from __future__ import annotations


def chat_prompt(tokenizer, question: str) -> str:
    """The text the model sees before its answer to `question`."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    return f"Question: {question}\nAnswer: "


def as_written(prompt: str) -> str:
    """A prompt given whole (a `prompt` writer for generate_answers that leaves the text as it stands)."""
    return prompt


def end_of_answer(tokenizer) -> str:
    """Appended to training targets so the model learns where an answer stops."""
    return tokenizer.eos_token or ""


def last_user_turn(messages: list[dict[str, str]]) -> int | None:
    """The index of the chat's last user message (the question being asked now), None when there is none."""
    return max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)


def conversation_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """A whole chat ({role, content} dicts) in the model's template, ready for the assistant's turn."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join([*lines, "Assistant: "])
