"""Keys of the runtime services the agent hands to tables (``QueryContext.services``).

Tables read the daemon's state through these keys (``tables.events.EVENT_STORES`` is the
third): one constant per key, never a literal.
"""

from __future__ import annotations

__all__ = ["AGENT_SERVICE", "EVENT_MANAGER"]

#: The agent's status view (:class:`agent.status_tables.AgentView`): osquery_info, osquery_schedule, ...
AGENT_SERVICE = "agent"
#: The event manager (:class:`agent.status.EventsView`): agent_events_status, osquery_events.
EVENT_MANAGER = "event_manager"
