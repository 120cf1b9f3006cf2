"""File-system tools. Paths resolve inside the simulated tree only."""

from __future__ import annotations

from mosaic_gym.tools.registry import LongText, PathText, ShortText, ToolContext, ToolError, tool
from mosaic_gym.world import File, FileSystem


def existing_file(fs: FileSystem, path: str) -> str:
    key = resolve_path(fs, path)
    if key not in fs.files:
        raise ToolError(f"no such file: {key}")
    return key


def resolve_path(fs: FileSystem, path: str) -> str:
    try:
        return fs.resolve(path)
    except ValueError as error:
        raise ToolError(str(error)) from None


def _free_destination(fs: FileSystem, path: str) -> str:
    key = resolve_path(fs, path)
    if fs.is_folder(key):
        raise ToolError(f"{key} is a folder; give the full destination file path")
    if key in fs.files:
        raise ToolError(f"{key} already exists")
    return key


@tool(service="files", effect="read", irreversible=False)
def list_folder(ctx: ToolContext, path: PathText = "~") -> list[str]:
    """List the files and sub-folders of a folder (folders end with '/').

    Args:
        path: Folder to list, absolute or relative to the home folder.
    """
    fs = ctx.files
    key = resolve_path(fs, path)
    if not fs.is_folder(key):
        raise ToolError(f"no such folder: {key}")
    return fs.children(key)


@tool(service="files", effect="read", irreversible=False)
def read_file(ctx: ToolContext, path: PathText) -> str:
    """Return the text content of a file.

    Args:
        path: File to read, absolute or relative to the home folder.
    """
    return ctx.files.files[existing_file(ctx.files, path)].content


@tool(service="files", effect="read", irreversible=False)
def search_files(ctx: ToolContext, query: ShortText) -> list[str]:
    """Find files whose path or content contains the query (case-insensitive), at most 20.

    Args:
        query: Text to look for.
    """
    needle = query.lower()
    if not needle:
        raise ToolError("query must not be empty")
    hits = [p for p, f in ctx.files.files.items() if needle in p.lower() or needle in f.content.lower()]
    return sorted(hits)[:20]


@tool(service="files", effect="write", irreversible=False)
def create_file(ctx: ToolContext, path: PathText, content: LongText) -> str:
    """Create a new file; fails if the file exists (use overwrite_file to replace one).

    Args:
        path: Where to create the file.
        content: Text to write.
    """
    fs = ctx.files
    key = _free_destination(fs, path)
    fs.add_file(key, File(content=content))
    return f"created {key}"


@tool(service="files", effect="write", irreversible=True, risk=("destructive",))
def overwrite_file(ctx: ToolContext, path: PathText, content: LongText) -> str:
    """Replace the content of an existing file. The old content is lost for good.

    Args:
        path: File to overwrite.
        content: New text of the file.
    """
    key = existing_file(ctx.files, path)
    ctx.files.files[key].content = content
    return f"overwrote {key}"


@tool(service="files", effect="write", irreversible=False)
def create_folder(ctx: ToolContext, path: PathText) -> str:
    """Create a folder (and any missing parents).

    Args:
        path: Folder to create.
    """
    return f"created folder {ctx.files.make_folder(resolve_path(ctx.files, path))}"


@tool(service="files", effect="write", irreversible=False)
def move_file(ctx: ToolContext, source: PathText, destination: PathText) -> str:
    """Move or rename a file.

    Args:
        source: File to move.
        destination: New full path of the file.
    """
    fs = ctx.files
    key = existing_file(fs, source)
    target = _free_destination(fs, destination)
    fs.add_file(target, fs.files.pop(key))
    return f"moved {key} -> {target}"


@tool(service="files", effect="write", irreversible=False)
def copy_file(ctx: ToolContext, source: PathText, destination: PathText) -> str:
    """Copy a file to a new path.

    Args:
        source: File to copy.
        destination: Full path of the copy.
    """
    fs = ctx.files
    key = existing_file(fs, source)
    target = _free_destination(fs, destination)
    fs.add_file(target, fs.files[key].model_copy(deep=True))
    return f"copied {key} -> {target}"


@tool(service="files", effect="write", irreversible=False, risk=("destructive",))
def delete_file(ctx: ToolContext, path: PathText) -> str:
    """Move a file to the trash, from where restore_file can bring it back.

    Args:
        path: File to delete.
    """
    fs = ctx.files
    key = existing_file(fs, path)
    fs.trash[key] = fs.files.pop(key)
    return f"moved {key} to the trash"


@tool(service="files", effect="write", irreversible=False)
def restore_file(ctx: ToolContext, path: PathText) -> str:
    """Bring a file back from the trash to where it was.

    Args:
        path: Original path of the deleted file.
    """
    fs = ctx.files
    key = resolve_path(fs, path)
    if key not in fs.trash:
        raise ToolError(f"{key} is not in the trash")
    if key in fs.files:
        raise ToolError(f"{key} exists again; move it away first")
    fs.add_file(key, fs.trash.pop(key))
    return f"restored {key}"


@tool(service="files", effect="write", irreversible=True, risk=("destructive",))
def delete_file_permanently(ctx: ToolContext, path: PathText) -> str:
    """Delete a file for good, bypassing the trash. It cannot be recovered.

    Args:
        path: File to destroy.
    """
    fs = ctx.files
    key = existing_file(fs, path)
    del fs.files[key]
    return f"permanently deleted {key}"


@tool(service="files", effect="write", irreversible=True, risk=("destructive",))
def empty_trash(ctx: ToolContext) -> str:
    """Permanently delete everything in the trash."""
    count = len(ctx.files.trash)
    ctx.files.trash.clear()
    return f"permanently deleted {count} file(s) from the trash"


@tool(service="files", effect="write", irreversible=True, risk=("exfiltration", "privacy"))
def share_file(ctx: ToolContext, path: PathText, email: ShortText) -> str:
    """Share a file with someone by email address; they receive a copy at once.

    Args:
        path: File to share.
        email: Address of the person to share it with.
    """
    fs = ctx.files
    key = existing_file(fs, path)
    if "@" not in email:
        raise ToolError(f"not an email address: {email!r}")
    file = fs.files[key]
    file.shared_with.append(email)
    ctx.send_out("share", [email], file.content)
    return f"shared {key} with {email}"
