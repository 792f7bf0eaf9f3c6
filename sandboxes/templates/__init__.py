"""Templates: recipes for sandboxes (image, starter code, setup, env, limits).

``service`` validates and changes them, ``starter`` keeps their starter code as a
git repository and installs it in sandboxes, ``dockerfile`` checks a template's
Dockerfile and ``builds`` builds it into an image (a background job), ``launch``
makes sandboxes from them, and ``pool`` keeps ready sandboxes of a template waiting
to be handed over. The models (``Template``, ``TemplateBuild``, ``PoolEntry``) live in
``sandboxes.models``.
"""

# The most bytes of starter files one upload may add up to (the API's body limit for
# the upload route is read here too, before any model is loaded).
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
