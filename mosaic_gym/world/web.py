"""A simulated web: pages by URL, a search index over them, forms and downloads."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Form(BaseModel):
    fields: list[str]
    purpose: str


class Page(BaseModel):
    url: str
    title: str
    content: str
    form: Form | None = None
    download: str | None = None


class Submission(BaseModel):
    url: str
    fields: dict[str, str]
    day: int


class Post(BaseModel):
    site: str
    title: str
    body: str
    day: int


class Web(BaseModel):
    pages: dict[str, Page] = Field(default_factory=dict)
    submissions: list[Submission] = Field(default_factory=list)
    posts: list[Post] = Field(default_factory=list)
