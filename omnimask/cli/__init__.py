"""The ``omnimask`` command (``main``) and what only it uses: the demo, job submission, ``check-plugin``
and the ``plugins`` listing."""
