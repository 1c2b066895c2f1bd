# One image for every Hookline service; the command picks it: `hookline ingest|fanout|sender|all|migrate`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY shared ./shared
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it.
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin hookline
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV PYTHONUNBUFFERED=1 \
    HOOKLINE_API_HOST=0.0.0.0 \
    HOOKLINE_LOG_FORMAT=json
EXPOSE 8000 9100 9101 9102
ENTRYPOINT ["hookline"]
CMD ["all"]
