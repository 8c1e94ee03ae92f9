"""Adapters that make Baton the session store of agent frameworks.

Each submodule needs its framework, installed through the matching extra:

- ``baton.integrations.openai_agents``: ``BatonSession``, the OpenAI Agents SDK ``Session``
  (``pip install "baton-client[openai-agents]"``).
- ``baton.integrations.adk``: ``BatonSessionService``, a Google ADK ``BaseSessionService``
  (``pip install "baton-client[adk]"``).
- ``baton.integrations.a2a``: ``BatonTaskStore``, the A2A SDK ``TaskStore``
  (``pip install "baton-client[a2a]"``).
"""
