"""Drives a running custos gateway with the official `openai` Python SDK.

Usage: python openai_sdk.py BASE_URL API_KEY  (exits non-zero on the first failed check)
"""
import sys

import openai
from openai import OpenAI

base_url, api_key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

models = [m.id for m in client.models.list()]
assert "gpt-4o-mini" in models, models

chat = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "hello from the sdk"}],
)
assert "hello from the sdk" in chat.choices[0].message.content, chat
assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
)
assert raw.headers.get("x-request-id"), raw.headers

parts = []
for chunk in client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "stream this"}],
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
assert "stream this" in "".join(parts), parts

usage = None
for chunk in client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "count me"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage:
        usage = chunk.usage
assert usage and usage.completion_tokens > 0, usage

completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=4)
assert completion.choices[0].finish_reason == "length", completion

emb = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
assert len(emb.data) == 2 and len(emb.data[0].embedding) == 1536
emb = client.embeddings.create(model="text-embedding-3-small", input="x", dimensions=16)
assert len(emb.data[0].embedding) == 16

# The Responses API, whole and streamed; usage comes in the completed response.
resp = client.responses.create(
    model="gpt-4o-mini", instructions="Be brief.", input="hello from responses"
)
assert resp.status == "completed", resp
assert "hello from responses" in resp.output_text, resp
assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens > 0, resp.usage

kinds, parts, completed = [], [], None
for event in client.responses.create(
    model="gpt-4o-mini",
    input=[{"role": "user", "content": [{"type": "input_text", "text": "stream responses"}]}],
    stream=True,
):
    kinds.append(event.type)
    if event.type == "response.output_text.delta":
        parts.append(event.delta)
    elif event.type == "response.completed":
        completed = event.response
assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
assert "stream responses" in "".join(parts), parts
assert completed.output_text == "".join(parts), completed
assert completed.usage.output_tokens > 0, completed.usage
seqs = []
with client.responses.stream(model="gpt-4o-mini", input="helper stream") as stream:
    for event in stream:
        seqs.append(event.sequence_number)
    final = stream.get_final_response()
assert "helper stream" in final.output_text, final
assert seqs == sorted(seqs), seqs

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    assert "no-such-model" in str(e), e

bad = OpenAI(base_url=base_url, api_key="ck_live_wrong", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("bad key accepted")
except openai.AuthenticationError:
    pass

print("openai sdk: all checks passed")
