"""The web API. This issue's scope: health and readiness; the worklist itself comes with issue 5."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from triage import __version__
from worklist import store
from worklist.db import Database


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    database: bool
    studies_by_state: dict[str, int]


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(_database)]


def create_app(database: Database) -> FastAPI:
    """Build the app over an open database."""
    app = FastAPI(title="triage", version=__version__)
    app.state.database = database

    @app.get("/healthz")
    def healthz() -> Health:
        """The process is up."""
        return Health(status="ok", version=__version__)

    @app.get("/readyz", responses={503: {"model": Readiness}})
    def readyz(db: DatabaseDep, response: Response) -> Readiness:
        """The database answers; counts of study versions by state."""
        try:
            with db.session() as session:
                session.execute(text("SELECT 1"))
                counts = store.count_by_state(session)
        except SQLAlchemyError:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            return Readiness(database=False, studies_by_state={})
        return Readiness(database=True, studies_by_state=counts)

    return app
