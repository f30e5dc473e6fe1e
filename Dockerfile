# The Flame for Python image: the session manager, the object cache and the executor manager (one
# image, three commands). Applications with an image of their own build FROM this one, so the executor
# manager that runs their service is there too.
#   docker build -t flame-python:0.1.0 .
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install '.[kubernetes,postgres]'

FROM python:3.12-slim
COPY --from=build /install /usr/local
RUN useradd --uid 10001 --create-home --home-dir /home/flame flame \
    && mkdir -p /var/lib/flame && chown flame:flame /var/lib/flame
USER 10001
WORKDIR /home/flame
ENV PYTHONUNBUFFERED=1
EXPOSE 8080 9090
# The session manager by default; the cache runs `flame object-cache ...`, executor-manager pods
# `flame executor-manager ...`.
ENTRYPOINT []
CMD ["flame", "session-manager", "--config", "/etc/flame/flame-cluster.yaml"]
