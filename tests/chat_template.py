"""The ChatML template and its two special tokens, for the small models the tests build."""

END, START = "<|im_end|>", "<|im_start|>"  # END first: id 0, what an all-zero output layer picks
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# ChatML that takes tools= the way Hermes and Qwen templates do: the schemas in the system turn,
# calls as <tool_call> JSON after the reply's text, results as <tool_response> in a user turn.
CHATML_TOOLS = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + message['content'] }}"
    "{%- if tools %}{{ '\\n\\n<tools>' }}{% for tool in tools %}{{ '\\n' + (tool | tojson) }}{% endfor %}"
    "{{ '\\n</tools>' }}{% endif %}{{ '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' + message['content'] }}"
    "{%- for call in message['tool_calls'] or [] %}"
    "{{ '\\n<tool_call>\\n' + ({'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson)"
    " + '\\n</tool_call>' }}"
    "{%- endfor %}{{ '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
