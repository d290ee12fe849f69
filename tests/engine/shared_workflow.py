"""A workflow defined in an importable module, for the registration tests."""

from flux import workflow


@workflow
async def shared(ctx):
    return ctx.input
