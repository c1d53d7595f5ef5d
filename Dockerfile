# The prediction server as a container, for Vertex AI custom containers (after 2027-01-14, when its
# prebuilt TF images end), Cloud Run, GKE or a laptop with Docker. Serving only: TensorFlow and
# check_deployed_model.local_server, no torch, no onnx-tf (requirements-serve.txt).
#   docker build -t mug-server .
#   docker run -p 8080:8080 -v $PWD/output/exported_model:/model mug-server
# On Vertex AI the model comes from $AIP_STORAGE_URI (the upload's --artifact-uri), the port from
# $AIP_HTTP_PORT and the routes from $AIP_HEALTH_ROUTE / $AIP_PREDICT_ROUTE; elsewhere from /model
# (mounted, or baked in by a Dockerfile of two lines: FROM this image, COPY exported_model /model).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MODEL_DIR=/model
WORKDIR /app
COPY requirements-serve.txt .
RUN pip install --no-cache-dir -r requirements-serve.txt
COPY mug_errors/ mug_errors/
COPY serving/ serving/
COPY check_deployed_model/__init__.py check_deployed_model/protocol.py check_deployed_model/local_server.py \
     check_deployed_model/
COPY check_deployed_model/server/ check_deployed_model/server/
EXPOSE 8080
CMD ["python", "-m", "check_deployed_model.local_server", "--host", "0.0.0.0"]
