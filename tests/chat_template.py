"""The ChatML template and its two special tokens, for the small models the tests build."""

END, START = "<|im_end|>", "<|im_start|>"  # END first: id 0, what an all-zero output layer picks
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
