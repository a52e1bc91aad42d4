"""The observer's errors, named by cause (every one an :class:`otp.OTPError`)."""

from __future__ import annotations

from .._errors import OTPError

__all__ = ["ObserverError", "InvalidProvider", "UnknownPanel", "PanelFailed", "PanelTimeout", "NotInCluster"]


class ObserverError(OTPError):
    """Base class of the observer's own errors."""


class InvalidProvider(ObserverError, ValueError):
    """A panel's provider is not an importable ``"module:function"``, or its
    name or timeout is unusable."""


class UnknownPanel(ObserverError, LookupError):
    """No panel of that name is added on the node asked."""


class PanelFailed(ObserverError):
    """A panel's provider raised, returned something that is not a panel,
    or its process exited; ``str()`` says which, for the view to show."""


class PanelTimeout(PanelFailed):
    """A panel's provider did not answer within its timeout (its process was
    killed)."""


class NotInCluster(ObserverError, LookupError):
    """A node that is neither this node nor one connected to it now."""
