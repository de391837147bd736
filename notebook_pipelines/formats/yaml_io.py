"""Harness pipeline YAML in and out: ``load_yaml`` reads the v0 shape, ``dump_yaml`` writes it.

Design notes
------------
**Modules.** This module is the public face; the work is done in four: :mod:`.yaml_document`
(text → data that remembers line and column, aliases within a budget; ``load_data``),
:mod:`.yaml_fields` (one node's settings and the problem/note reporting),
:mod:`.yaml_reader` (the v0 shape → the model) and :mod:`.yaml_writer` (the model → YAML).

**Reading.** PyYAML's safe loader composes the document (libyaml limits nesting to 1,000
levels); the composed graph is checked without recursion — aliases may repeat at most
``MAX_ALIAS_NODES`` nodes and may not contain their own anchor — and built without recursion
into mappings and lists that remember where every mapping, key and list item sat, so each problem
names the file, line and column (1-based) as well as the node's fully qualified name. Step groups
deeper than ``limits.MAX_GROUP_DEPTH`` are refused before the reader descends into them. The
reader then maps the v0 shape onto the model:

=======================================  ===============================================
Harness YAML                             model
=======================================  ===============================================
``pipeline.stages`` (``stage``,          ``Pipeline.stages`` (``Stage``, ``Parallel``)
``parallel``)
``stage.spec.execution.steps``           ``Stage.items`` (``Step``, ``StepGroup``, ``Parallel``)
``…execution.rollbackSteps``             ``Stage.rollback_items``
``stage.type``                           ``Stage.type``
other ``stage.spec`` keys (service,      ``Stage.spec`` (kept as data; a Deployment stage's
environment, infrastructure…)            infrastructure also gives ``Stage.resource``, R13/D8)
``stepGroup`` (``steps``,                ``StepGroup`` (``items``, ``rollback_items``)
``rollbackSteps``)
``step.type`` / ``spec`` / ``timeout``   ``Step.type`` / ``Step.spec`` / ``Step.timeout``
``step.spec.delegateSelectors``          ``Step.delegate_selectors``
``failureStrategies``                    a list of :class:`~notebook_pipelines.definition.failure.OnFailure`
``when``                                 :class:`~notebook_pipelines.definition.failure.When`
``variables`` (list of name/type/value)  a dict name → value (types that the value does not
                                         imply are kept in ``extra["variables"]``)
``delegateSelectors``, ``timeout``,      the fields of the same name (``strategy`` as written:
``strategy``                             the YAML dict, R48; ``nbp.Matrix`` … written back as one)
anything else                            ``extra`` of the node, written back as it was
=======================================  ===============================================

What the toolkit does not model is *kept* and *reported* (one :class:`YamlWarning` listing every
note): template references, ``<+input>`` runtime inputs, service/environment/infrastructure
blocks, unknown keys, step types without a handler (simulated only). Looping strategies
(``strategy:``, R48) are read as they are written and expanded when the node runs. Real mistakes
raise :class:`YamlError` (a ``DefinitionError``) listing every problem with its line and column:
invalid YAML, a node without identifier, an unknown action type, a stage without execution, a
step group inside a step group under the ``classic`` rules (D1), variables that are not a list of
``{name, type, value}`` entries with distinct names, known types and numbers for ``Number``.
Every fix is written for a YAML author; so are the fixes of validation problems of a pipeline read
from YAML (:meth:`~notebook_pipelines.errors.Problem.for_yaml`).

**Canonical form.** Loading gives one form for each setting, so ``load_yaml(p.to_yaml()) == p``:
``name`` is ``None`` when it equals the identifier, empty ``spec``/``variables``/``extra`` are
``None``, ``when`` is a ``When``, failure strategies a list of ``OnFailure``.

**Writing.** :func:`dump_yaml` writes the same shape back (the Harness spelling of every action
and condition, multi-line scripts as literal blocks, no anchors). What has no Harness YAML form —
a Python body, a simulated ``duration``, step ``inputs``/``outputs``/``variables``, a ``resource``
the infrastructure does not imply, a callable condition — is left out with a warning.

>>> p = load_yaml('''
... pipeline:
...   identifier: release
...   name: Release
...   stages:
...     - stage:
...         identifier: build
...         type: Custom
...         spec:
...           execution:
...             steps:
...               - step: {identifier: unit, type: ShellScript, timeout: 1m,
...                        spec: {shell: Bash, source: {type: Inline, spec: {script: echo hi}}}}
... ''')
>>> p.stages[0].items[0]
Step('unit')
>>> load_yaml(p.to_yaml()) == p
True
"""

from __future__ import annotations

from ..errors import YamlError, YamlSyntaxError, YamlWarning
from .yaml_document import MAX_ALIAS_NODES, YamlProblem, load_data
from .yaml_fields import Note, infrastructure_key
from .yaml_reader import Loaded, load_yaml, read_yaml, source_position
from .yaml_writer import dump_yaml

__all__ = [
    "MAX_ALIAS_NODES",
    "Loaded",
    "Note",
    "YamlError",
    "YamlProblem",
    "YamlSyntaxError",
    "YamlWarning",
    "dump_yaml",
    "infrastructure_key",
    "load_data",
    "load_yaml",
    "read_yaml",
    "source_position",
]
