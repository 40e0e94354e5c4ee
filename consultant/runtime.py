"""The objects every component needs, built once per process from settings and passed along."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import make_engine, make_session_factory
from consultant.outbox.sentcopy import SentFolder
from consultant.outbox.transport import Transport, make_transport
from consultant.privacy.crypto import load_keys
from consultant.settings import Settings


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database.url, keys=load_keys(self.settings.privacy))

    @cached_property
    def factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    def transport(self) -> Transport:
        """A new transport (SMTP connections are not shared between threads)."""
        return make_transport(self.settings.smtp_out)

    @cached_property
    def sent_folder(self) -> SentFolder:
        return SentFolder(self.settings.imap)

    def dispose(self) -> None:
        if "sent_folder" in self.__dict__:
            self.sent_folder.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
