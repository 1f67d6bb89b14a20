"""User onboarding, the seed's first use case: imperative and as a graph.

Run it:  python examples/onboarding.py        (state goes to sqlite:///graphflow.db)
Or:      graphflow run examples/onboarding.py onboard_user \
             --input '{"email": "ada@example.com", "user_id": "u1"}'
"""

from __future__ import annotations

import asyncio
import sys

from pydantic import BaseModel

import graphflow as gf


class Profile(BaseModel):
    user_id: str
    email: str
    plan: str


class OnboardInput(BaseModel):
    email: str
    user_id: str


class OnboardOutput(BaseModel):
    success: bool
    welcome: str


# --- plain functions: usable as workflow steps, HTTP handlers or queue jobs -------------------


@gf.function
async def create_user_profile(email: str, user_id: str) -> Profile:
    """Create the user's profile (a database insert in a real service)."""
    await asyncio.sleep(0.01)
    return Profile(user_id=user_id, email=email, plan="pro" if email.endswith(".com") else "free")


@gf.function(retries=3, retry_delay="1s")
def send_email(to: str, subject: str = "Welcome!", body: str = "") -> dict[str, str]:
    """Send an email (a sync function: it runs in a worker thread)."""
    return {"to": to, "subject": subject, "status": "sent"}


@gf.function
async def create_default_todos(user_id: str) -> list[str]:
    """Give the new user something to do."""
    return [f"{user_id}: complete your profile", f"{user_id}: invite a teammate"]


# --- the imperative workflow ------------------------------------------------------------------


@gf.workflow
async def onboard_user(wf: gf.Workflow, data: OnboardInput) -> OnboardOutput:
    """Create a profile, welcome the user, wait a little, then send the email."""
    user = await wf.do(
        "Create profile", "create_user_profile", {"email": data.email, "user_id": data.user_id}
    )
    message = await wf.do("Generate welcome", lambda: f"Welcome, {user.email}!")
    await wf.sleep("Wait before emailing", "2s")  # "5min" in production: durable either way
    await wf.do("Send email", send_email, {"to": user.email, "body": message})
    return OnboardOutput(success=True, welcome=message)


# --- the same process as a graph --------------------------------------------------------------

user_onboarding = gf.workflow_graph(
    name="user_onboarding",
    description="Onboard a new user",
    nodes={
        "create_profile": "create_user_profile",
        "send_welcome": "send_email",
        "setup_defaults": "create_default_todos",
    },
    config={
        "create_profile": {"next": ["send_welcome", "setup_defaults"]},  # parallel
        "send_welcome": {
            "input": lambda ref: {"to": ref("create_profile", "email"), "subject": "Welcome!"}
        },
        "setup_defaults": {"input": lambda ref: {"user_id": ref("create_profile", "user_id")}},
    },
)


def main() -> None:
    """Run both workflows on the default store and print their outputs."""
    data = {"email": "ada@example.com", "user_id": "u1"}
    print("onboard_user:", gf.run("onboard_user", data), file=sys.stderr)
    print("user_onboarding:", gf.run("user_onboarding", data), file=sys.stderr)


if __name__ == "__main__":
    main()
